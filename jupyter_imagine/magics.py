"""The IPython magics: ``%imagine`` and ``%%reroll``.

``%load_ext jupyter_imagine`` registers :class:`ImagineMagics`, adds it to
``shell.configurables`` (so ``%config ImagineMagics.<TAB>`` completes) and starts the engine,
which resumes the jobs left unfinished by an earlier session.

Parsing is kept apart from execution (JupySQL style): :func:`_parse` is a pure function from the
magic's line to a :class:`ParsedCommand`, and the magic methods only run what it describes.

The rules of ``%imagine [options] PROMPT``:

- The line is read with ``@no_var_expand``: IPython's ``$var`` / ``{expr}`` expansion would
  mangle ``--ar 16:9``, ``::2`` weights and ``{red, green}`` permutations.
- The magic's own options come first. The first word that does not start with ``-`` begins the
  prompt; a lone ``--`` ends the options and everything after it (minus one space) is the prompt.
- The prompt is the raw rest of the line: never split and re-joined, so spacing, quotes, braces,
  ``$`` and Midjourney flags reach the provider exactly as typed (the engine only strips the ends).
- Options: ``-p/--provider NAME``, ``-w/--wait``, ``-t/--timeout SECONDS``, and any parameter of
  the provider (chosen by ``-p`` or the default) as ``--name VALUE`` / ``--name=VALUE``, with ``-``
  or ``_`` in the name. Short options may be clustered (``-wp apiframe``) or take their value
  attached (``-t30``). An unknown option is an error naming it and listing the valid ones.
- ``{{name}}`` / ``{{ name.attr }}`` is the only interpolation: ``str()`` of that variable of the
  user namespace, with dotted attribute access and nothing evaluated. ``{{`` followed by anything
  else (``{{red, green}, blue}`` — a nested permutation) is left untouched.
- When the first word is exactly ``providers``, ``history`` or ``job``, it is a subcommand; a
  prompt that starts with one of these words goes after ``--``.

Every :class:`~jupyter_imagine.errors.ImagineError` and every parse error is shown as one line
(:class:`~IPython.core.error.UsageError`), without a traceback; anything else is a bug and shows
as one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, kwds, magic_arguments, parse_argstring
from traitlets import Bool, Float, Unicode, observe, validate

from . import api
from ._secrets import get_logger
from .errors import ConfigurationError, ImagineError, NotFound
from .models import REROLL, Job
from .providers import PROVIDERS, ParamSpec, provider_class

logger = get_logger(__name__)

__all__ = [
    "ImagineMagics",
    "ParsedCommand",
    "ProviderReport",
    "load_ipython_extension",
    "unload_ipython_extension",
]

#: Words that start a subcommand instead of a prompt when they come first on the line.
SUBCOMMANDS = ("providers", "history", "job")
#: Rows ``%imagine history`` shows when no N is given.
DEFAULT_HISTORY_LIMIT = 20

# The magic's own options: long name → (short letter, takes a value).
_OPTIONS: dict[str, tuple[str, bool]] = {
    "provider": ("p", True),
    "wait": ("w", False),
    "timeout": ("t", True),
}
_SHORT = {short: name for name, (short, _) in _OPTIONS.items()}
_OWN_OPTIONS_TEXT = "-p/--provider NAME, -w/--wait, -t/--timeout SECONDS"

ParamSource = Callable[[str], Mapping[str, ParamSpec]] | Mapping[str, ParamSpec]


# ====================================================================== parsing
@dataclass(frozen=True)
class ParsedCommand:
    """What one ``%imagine`` line asks for.

    Attributes:
        command: ``"imagine"`` (default), ``"providers"``, ``"history"`` or ``"job"``.
        prompt: the raw prompt text, exactly as typed (``{{var}}`` not yet interpolated).
        provider: the provider given with ``-p``, else ``None`` (the default applies).
        wait: ``True`` when ``-w/--wait`` was given (default ``False``).
        timeout: seconds given with ``-t/--timeout``, else ``None``.
        params: provider parameters by their canonical name, values as typed (strings).
        limit: ``history``'s N, else ``None``.
        job_id: ``job``'s ID, else ``None``.
    """

    command: str = "imagine"
    prompt: str = ""
    provider: str | None = None
    wait: bool = False
    timeout: float | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    limit: int | None = None
    job_id: str | None = None


def _read_token(line: str, start: int) -> tuple[str, int]:
    """The shell-style word at ``line[start]`` (not whitespace) and the index just after it.

    Single quotes are literal, double quotes allow ``\\"`` and ``\\\\``, a backslash outside
    quotes escapes the next character. Only option words and values are read this way; the
    prompt never is.
    """
    out: list[str] = []
    i, n = start, len(line)
    while i < n and not line[i].isspace():
        char = line[i]
        if char == "'":
            close = line.find("'", i + 1)
            if close < 0:
                raise UsageError(f"unclosed ' in the options at {line[start:]!r}")
            out.append(line[i + 1 : close])
            i = close + 1
        elif char == '"':
            i += 1
            while True:
                if i >= n:
                    raise UsageError(f'unclosed " in the options at {line[start:]!r}')
                char = line[i]
                if char == '"':
                    i += 1
                    break
                if char == "\\" and i + 1 < n and line[i + 1] in '"\\':
                    char = line[i + 1]
                    i += 1
                out.append(char)
                i += 1
        elif char == "\\" and i + 1 < n:
            out.append(line[i + 1])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out), i


def _skip_space(line: str, i: int) -> int:
    while i < len(line) and line[i].isspace():
        i += 1
    return i


def _words(text: str) -> list[str]:
    """``text`` split into shell-style words."""
    words: list[str] = []
    i = _skip_space(text, 0)
    while i < len(text):
        word, i = _read_token(text, i)
        words.append(word)
        i = _skip_space(text, i)
    return words


def _option_value(line: str, i: int, option: str) -> tuple[str, int]:
    """The value word following ``option`` at ``line[i:]``."""
    i = _skip_space(line, i)
    ends_options = line[i : i + 2] == "--" and (i + 2 == len(line) or line[i + 2].isspace())
    if i >= len(line) or ends_options:
        raise UsageError(f"option {option} needs a value, e.g. {option} VALUE")
    return _read_token(line, i)


def _check_timeout(timeout: float | None) -> float | None:
    """``timeout`` if it is ``None`` or a positive finite number of seconds."""
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"-t/--timeout must be a positive number of seconds, not {timeout:g}")
    return timeout


def _params_of(source: ParamSource, provider: str) -> Mapping[str, ParamSpec]:
    return source(provider) if callable(source) else source


def _parse_subcommand(word: str, rest: str) -> ParsedCommand:
    args = _words(rest)
    hint = f"(for a prompt that starts with {word!r}, write %imagine -- {word} …)"
    if word == "providers":
        if args:
            raise UsageError(f"providers takes no arguments, not {' '.join(args)!r} {hint}")
        return ParsedCommand(command="providers")
    if word == "history":
        if not args:
            return ParsedCommand(command="history")
        if len(args) == 1 and args[0].isdigit():
            return ParsedCommand(command="history", limit=int(args[0]))
        raise UsageError(f"history takes one number N (default 20), not {' '.join(args)!r} {hint}")
    # job
    if len(args) != 1 or not args[0].strip():
        given = f"not {' '.join(args)!r} " if args else ""
        raise UsageError(f"job takes one job id, {given}{hint}")
    return ParsedCommand(command="job", job_id=args[0].strip())


def _parse(
    line: str, provider_params: ParamSource, *, default_provider: str | None = None
) -> ParsedCommand:
    """Split a ``%imagine`` line into options and the raw prompt (pure: no engine, no shell).

    Args:
        line: the text after ``%imagine``.
        provider_params: the parameters a provider accepts, as a function of the provider's name
            (``lambda name: provider_class(name).params``; it may raise for an unknown name) or
            one mapping used whatever the provider.
        default_provider: the provider when ``-p`` is not given (default:
            ``api.default_provider()``).

    Raises:
        UsageError: an unknown option, a missing value, an empty prompt, bad subcommand arguments.
        ImagineError: whatever ``provider_params`` raises (an unknown provider).
    """
    n = len(line)
    i = _skip_space(line, 0)
    if i < n and line[i] != "-":
        end = i
        while end < n and not line[end].isspace():
            end += 1
        if line[i:end] in SUBCOMMANDS:
            return _parse_subcommand(line[i:end], line[end:])

    argv: list[str] = []
    params: dict[str, str] = {}
    spelled: dict[str, str] = {}  # canonical parameter name → the option as typed
    prompt = ""
    while True:
        i = _skip_space(line, i)
        if i >= n:
            break
        if line[i] != "-":
            prompt = line[i:]
            break
        token, end = _read_token(line, i)
        if line[i:end] == "--":
            rest = line[end:]
            prompt = rest[1:] if rest[:1].isspace() else rest
            break
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            own = _OPTIONS.get(name)
            if own is not None:
                if not own[1]:
                    if eq:
                        raise UsageError(f"option --{name} takes no value")
                    argv.append(f"--{name}")
                else:
                    if not eq:
                        value, end = _option_value(line, end, f"--{name}")
                    argv.append(f"--{name}={value}")
            else:
                if not name:
                    raise UsageError(
                        f"unknown option {token!r}; valid options: {_OWN_OPTIONS_TEXT}"
                    )
                if not eq:
                    value, end = _option_value(line, end, f"--{name}")
                key = name.replace("-", "_")
                params[key] = value
                spelled.setdefault(key, f"--{name}")
        else:
            cluster = token[1:]
            if not cluster:
                raise UsageError(
                    f"a lone '-' is not an option; valid options: {_OWN_OPTIONS_TEXT} "
                    "(a prompt that starts with '-' goes after --)"
                )
            k = 0
            while k < len(cluster):
                long = _SHORT.get(cluster[k])
                if long is None:
                    raise UsageError(
                        f"unknown option -{cluster[k]} in {token!r}; valid options: "
                        f"{_OWN_OPTIONS_TEXT} "
                        "(a prompt that starts with '-' goes after --)"
                    )
                if not _OPTIONS[long][1]:
                    argv.append(f"--{long}")
                    k += 1
                    continue
                value = cluster[k + 1 :]
                value = value[1:] if value.startswith("=") else value
                if not value:
                    value, end = _option_value(line, end, f"-{cluster[k]}")
                argv.append(f"--{long}={value}")
                break
        i = end

    options = ImagineMagics.imagine.parser.parse_args(argv)
    provider = options.provider
    if provider is not None:
        provider = provider.strip()
        if not provider:
            raise UsageError("option -p/--provider needs a provider name, e.g. -p apiframe")
    timeout = _check_timeout(options.timeout)

    chosen = provider or default_provider or api.default_provider()
    accepted = _params_of(provider_params, chosen)
    for key, typed in spelled.items():
        if key not in accepted:
            theirs = ", ".join(f"--{p}" for p in accepted) or "none"
            raise UsageError(
                f"unknown option {typed}; valid options: {_OWN_OPTIONS_TEXT}, and {chosen}'s "
                f"parameters: {theirs} (Midjourney flags such as --ar go in the prompt, after "
                "its first word)"
            )
    if not prompt.strip():
        raise UsageError(
            "the prompt is empty; write %imagine [options] PROMPT, e.g. %imagine a lighthouse "
            "at dusk (see %imagine? for the options)"
        )
    return ParsedCommand(
        prompt=prompt,
        provider=provider,
        wait=bool(options.wait),
        timeout=timeout,
        params=params,
    )


# {{name}}, {{name.attr.attr}}, spaces allowed inside the braces; nothing else is evaluated.
_VARIABLE = re.compile(r"\{\{\s*([^\W\d]\w*(?:\.[^\W\d]\w*)*)\s*\}\}")


def _interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """``text`` with each ``{{name}}`` / ``{{name.attr}}`` replaced by ``str()`` of its value.

    Raises:
        UsageError: an unknown variable or attribute.
    """

    def substitute(match: re.Match[str]) -> str:
        first, *attrs = match.group(1).split(".")
        if first not in namespace:
            raise UsageError(f"unknown variable {first!r} in {match.group(0)}")
        value = namespace[first]
        path = first
        for attr in attrs:
            if not hasattr(value, attr):
                raise UsageError(f"{path} has no attribute {attr!r} in {match.group(0)}")
            value = getattr(value, attr)
            path += "." + attr
        return str(value)

    return _VARIABLE.sub(substitute, text)


def _provider_params(name: str) -> Mapping[str, ParamSpec]:
    return provider_class(name).params


# ====================================================================== help text
_IMAGINE_DESCRIPTION = """\
Start an image-generation job and return its Job at once (job = %imagine … works).

The prompt is everything from its first word to the end of the line, sent untouched:
Midjourney flags (--ar 16:9), ::weights, {red, green} permutations, quotes and $ reach the
provider exactly as typed. The magic's own options come first; a lone -- ends them, so a
prompt may start with '-' or with a subcommand word. {{name}} or {{name.attr}} is replaced
by str() of that variable; nothing else is interpolated or evaluated.

Defaults come from %config ImagineMagics (default_provider, wait, timeout)."""


def _param_help(spec: ParamSpec) -> tuple[str, str]:
    value = "{" + ",".join(map(str, spec.choices)) + "}" if spec.choices else "VALUE"
    return f"--{spec.name} {value}", spec.help or ""


def _imagine_epilog() -> str:
    lines = ["provider parameters (--name VALUE or --name=VALUE; - and _ both work in the name):"]
    for name, cls in PROVIDERS.items():
        lines.append(f"  {name}:")
        helps = [_param_help(spec) for spec in cls.params.values()]
        width = max((len(flag) for flag, _ in helps), default=0)
        lines += [f"    {flag.ljust(width)}  {text}".rstrip() for flag, text in helps]
        if not helps:
            lines.append("    (none)")
    lines += [
        "",
        "subcommands (when the line starts with one of these words):",
        "  %imagine providers     which providers have a key (✅/❌), sandbox or base URL",
        f"  %imagine history [N]   the newest N jobs (default {DEFAULT_HISTORY_LIMIT}) as a "
        "gallery:",
        "                         filter by provider, status, prompt; click one to open it",
        "  %imagine job ID        a stored job by local id, provider id or unique prefix",
        "",
        "examples:",
        "  %imagine a lighthouse at dusk --ar 3:2",
        "  job = %imagine -p apiframe --process_mode turbo a {red, green} fox::2 cat::1 --ar 16:9",
        "  %imagine --wait -t 120 {{subject}} in the style of {{style.name}}",
        "  %imagine --aspect-ratio 3:2 -- -a prompt that starts with a dash",
        "  %imagine -- history of the lighthouse",
        "  %imagine history 5",
        "",
        "then: %%reroll [JOB_ID] with the new prompt as the cell body.",
    ]
    return "\n".join(lines)


_REROLL_DESCRIPTION = """\
Reroll (🔄) a job with the cell body as the new prompt; returns the child Job.

JOB_ID is any id jupyter_imagine.job() accepts (local id, provider id, unique prefix of 6+
characters). Without it: the last job started with %imagine or %%reroll in this session, else
the newest job in the history. The body is stripped, {{name}} / {{name.attr}} are interpolated,
and it must not be empty. A job that offers no 🔄 (an upscale, a job still running) is an error."""

_REROLL_EPILOG = """\
examples (the cell body is the new prompt):
  %%reroll 3f2a9c
  a lighthouse at dawn, {fog, rain} --ar 3:2

rerolling the last job, and waiting for the result:
  %%reroll --wait
  {{subject}} at dawn"""


# ====================================================================== output objects
class ProviderReport:
    """What ``%imagine providers`` returns: one line per provider.

    A terminal shows the text (``repr``), a notebook a Markdown table; :attr:`frame` holds the
    :func:`jupyter_imagine.providers` DataFrame behind both.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def _rows(self) -> list[tuple[str, str, str, str]]:
        rows = []
        for rec in self.frame.to_dict("records"):
            mark = "✅" if rec.get("key_set") else "❌"
            if rec.get("problem"):
                where = f"⚠ {rec['problem']}"
            elif rec.get("sandbox"):
                where = "sandbox"
            else:
                where = str(rec.get("base_url") or "")
            rows.append((mark, str(rec["provider"]), str(rec.get("key") or ""), where))
        return rows

    def __repr__(self) -> str:
        rows = self._rows()
        if not rows:
            return "no providers"
        w_name = max(len(r[1]) for r in rows)
        w_key = max(len(r[2]) for r in rows)
        return "\n".join(
            f"{mark} {name.ljust(w_name)}  {key.ljust(w_key)}  {where}"
            for mark, name, key, where in rows
        )

    __str__ = __repr__

    def _repr_markdown_(self) -> str:
        lines = ["| | provider | key | runs against |", "|---|---|---|---|"]
        for mark, name, key, where in self._rows():
            cells = (mark, f"**{name}**", f"`{key}`", where)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines)


# ====================================================================== the magics
@magics_class
class ImagineMagics(Magics):
    """``%imagine`` and ``%%reroll``, configurable with ``%config ImagineMagics.<trait>``."""

    default_provider = Unicode(
        "",
        help="Provider used when %imagine gets no -p. Default '' means "
        "JUPYTER_IMAGINE_PROVIDER or apiframe.",
    ).tag(config=True)
    wait = Bool(
        False,
        help="Block until every job started by %imagine / %%reroll is finished, as if -w were "
        "given. Default False: return the job at once.",
    ).tag(config=True)
    timeout = Float(
        None,
        allow_none=True,
        help="Seconds a job may take (its deadline, and the bound of -w/--wait) when -t is not "
        "given. Default None: the provider's own deadline (15 min for APIFRAME).",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        #: The last job started through these magics (what ``%%reroll`` rerolls by default).
        self.last_job: Job | None = None

    @validate("default_provider")
    def _normalize_default_provider(self, proposal: Any) -> str:
        # Lenient on purpose: %config also stores the value in the shell's config, which every
        # later instance (after %reload_ext) loads, so raising here would break %load_ext for
        # the rest of the session. An unknown name is logged now and is an error on use.
        return str(proposal["value"] or "").strip().lower()

    @observe("default_provider")
    def _warn_unknown_provider(self, change: Any) -> None:
        if change["new"] and change["new"] not in PROVIDERS:
            logger.warning(
                "ImagineMagics.default_provider = %r is not a provider; choose one of: %s",
                change["new"], ", ".join(PROVIDERS),
            )

    def _default_provider(self) -> str:
        return self.default_provider or api.default_provider()

    def _params_for(self, name: str) -> Mapping[str, ParamSpec]:
        """The parameters provider ``name`` accepts; an unknown default names its setting."""
        if name and name == self.default_provider and name not in PROVIDERS:
            raise ConfigurationError(
                f"ImagineMagics.default_provider is {name!r}, which is not a provider; choose "
                f"one of: {', '.join(PROVIDERS)} (%config ImagineMagics.default_provider = "
                f"'{next(iter(PROVIDERS), '')}')"
            )
        return _provider_params(name)

    def _namespace(self) -> Mapping[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    # ------------------------------------------------------------------ %imagine
    @no_var_expand
    @magic_arguments()
    @argument(
        "-p", "--provider", metavar="NAME",
        help="apiframe, … (default: ImagineMagics.default_provider, else "
        "JUPYTER_IMAGINE_PROVIDER, else apiframe)",
    )
    @argument(
        "-w", "--wait", action="store_true",
        help="block until the job is finished, then return it (default: return at once)",
    )
    @argument(
        "-t", "--timeout", type=float, metavar="SECONDS",
        help="the job's deadline, also the bound of --wait (default: the provider's own)",
    )
    @argument("prompt", nargs="*", metavar="PROMPT", help="the rest of the line, sent untouched")
    @kwds(description=_IMAGINE_DESCRIPTION, epilog=_imagine_epilog())
    @line_magic
    def imagine(self, line: str) -> Any:
        """Start an image-generation job (the full help replaces this at import)."""
        try:
            command = _parse(line, self._params_for, default_provider=self._default_provider())
            if command.command == "providers":
                return ProviderReport(api.provider_status())
            if command.command == "history":
                from .widgets import gallery

                return gallery(api.history(limit=command.limit or DEFAULT_HISTORY_LIMIT))
            if command.command == "job":
                return self._job(_interpolate(command.job_id or "", self._namespace()))
            return self._imagine(command)
        except ImagineError as exc:
            raise UsageError(str(exc)) from None

    def _job(self, job_id: str) -> Job:
        try:
            return api.job(job_id)
        except NotFound as exc:
            raise UsageError(
                f"{exc} (for a prompt that starts with 'job', write %imagine -- job …)"
            ) from None

    def _imagine(self, command: ParsedCommand) -> Job:
        namespace = self._namespace()
        prompt = _interpolate(command.prompt, namespace)
        params = {key: _interpolate(value, namespace) for key, value in command.params.items()}
        provider = command.provider or self._default_provider()
        timeout = command.timeout if command.timeout is not None else self.timeout
        job = api.imagine(prompt, provider=provider, timeout=timeout, **params)
        self.last_job = job
        logger.debug("%%imagine started %s job %s", job.provider, job.id)
        if command.wait or self.wait:
            job.wait(timeout)
        return job

    # ------------------------------------------------------------------ %%reroll
    @no_var_expand
    @magic_arguments()
    @argument(
        "-w", "--wait", action="store_true",
        help="block until the new job is finished, then return it (default: return at once)",
    )
    @argument(
        "-t", "--timeout", type=float, metavar="SECONDS",
        help="the new job's deadline, also the bound of --wait (default: the provider's own)",
    )
    @argument(
        "job_id", nargs="?", metavar="JOB_ID",
        help="the job to reroll (default: the last one started here, else the newest stored)",
    )
    @kwds(description=_REROLL_DESCRIPTION, epilog=_REROLL_EPILOG)
    @cell_magic
    def reroll(self, line: str, cell: str) -> Job:
        """Reroll a job with the cell body as the prompt (the full help replaces this)."""
        try:
            args = parse_argstring(self.reroll, line)
        except ValueError as exc:  # unbalanced quotes in the line
            raise UsageError(f"%%reroll could not read its options {line!r}: {exc}") from None
        namespace = self._namespace()
        prompt = _interpolate((cell or "").strip(), namespace).strip()
        if not prompt:
            raise UsageError(
                "the cell is empty; write the new prompt in the %%reroll cell's body"
            )
        timeout = _check_timeout(args.timeout)
        if timeout is None:
            timeout = self.timeout
        try:
            parent = self._reroll_target(args.job_id, namespace)
            if REROLL not in parent.actions:
                raise UsageError(_no_reroll(parent))
            extra = {"timeout": timeout} if timeout is not None else {}
            child = parent.reroll(prompt=prompt, **extra)
            self.last_job = child
            logger.debug("reroll started %s job %s from %s", child.provider, child.id, parent.id)
            if args.wait or self.wait:
                child.wait(timeout)
            return child
        except ImagineError as exc:
            raise UsageError(str(exc)) from None

    def _reroll_target(self, job_id: str | None, namespace: Mapping[str, Any]) -> Job:
        if job_id:
            return api.job(_interpolate(job_id, namespace))
        if self.last_job is not None:
            return self.last_job
        record = api.get_engine().store.last()
        if record is None:
            raise UsageError(
                "no job to reroll: the history is empty; start one with %imagine PROMPT"
            )
        return api.job(record["id"])


def _no_reroll(job: Job) -> str:
    """The one-line reason ``job`` cannot be rerolled."""
    if not job.status.final:
        return (
            f"{job.provider} {job.kind} job {job.id} is still {job.status.value}: it offers no "
            f"{REROLL} until it has succeeded (wait for it, e.g. %imagine --wait)"
        )
    offers = ", ".join(job.actions) or "nothing"
    return (
        f"{job.provider} {job.kind} job {job.id} ({job.status.value}) offers no {REROLL}; "
        f"it offers: {offers}"
    )


# ====================================================================== extension hooks
def load_ipython_extension(ipython: Any) -> None:
    """Register :class:`ImagineMagics` with ``ipython`` and start the engine.

    The instance is created with ``parent=ipython`` (so config files and ``%config`` reach it)
    and is the only :class:`ImagineMagics` in ``ipython.configurables``. Starting the engine
    resumes the jobs an earlier session left unfinished.
    """
    magics = ImagineMagics(shell=ipython, parent=ipython)
    ipython.register_magics(magics)
    configurables = ipython.configurables
    configurables[:] = [c for c in configurables if not isinstance(c, ImagineMagics)]
    configurables.append(magics)
    try:
        api.get_engine()
    except ImagineError as exc:  # e.g. an unusable JUPYTER_IMAGINE_HOME: the magics still load
        logger.warning("jupyter_imagine: the engine did not start: %s", exc)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove :class:`ImagineMagics` from ``ipython.configurables`` (the magics stay defined)."""
    configurables = ipython.configurables
    configurables[:] = [c for c in configurables if not isinstance(c, ImagineMagics)]
