"""The IPython magics: ``%imagine`` and ``%%reroll``.

``%load_ext jupyter_imagine`` registers :class:`ImagineMagics`, adds it to
``shell.configurables`` (so ``%config ImagineMagics.<TAB>`` completes), adds tab completion
(:mod:`._magic_completion`), shows the errors raised through the magics as one line
(:mod:`._magic_errors`) and starts the engine, which resumes the jobs left unfinished by an
earlier session.

Parsing is kept apart from execution (JupySQL style): :mod:`._magic_parser` turns the line into a
:class:`ParsedCommand` (its docstring holds the rules), :mod:`._magic_help` writes the help from
the same tables, and the magic methods here only run what the command describes. The line is read
with ``@no_var_expand``: IPython's ``$var`` / ``{expr}`` expansion would mangle ``--ar 16:9``,
``::2`` weights and ``{red, green}`` permutations.

Usage mistakes (bad options, an empty prompt) raise :class:`~IPython.core.error.UsageError`;
every :class:`~jupyter_imagine.errors.ImagineError` keeps its own type (``except ji.JobFailed``
works) and is shown as one line; anything else is a bug and shows a traceback.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from traitlets import Bool, Dict, Float, TraitError, Unicode, validate

from . import _magic_errors, api
from ._magic_completion import MATCHER_ID, make_matcher
from ._magic_help import MagicHelp, imagine_help, reroll_help
from ._magic_parser import (
    DEFAULT_HISTORY_LIMIT,
    ParsedCommand,
    RerollCommand,
    interpolate,
    parse,
    parse_reroll,
)
from ._secrets import get_logger
from .errors import ImagineError, NotFound
from .models import Job
from .providers import PROVIDERS, ParamSpec, provider_class

logger = get_logger(__name__)

__all__ = [
    "ImagineMagics",
    "MagicHelp",
    "ParsedCommand",
    "ProviderReport",
    "load_ipython_extension",
    "unload_ipython_extension",
]

#: How many recent job ids ``%%reroll <TAB>`` / ``%imagine job <TAB>`` offer.
COMPLETED_JOB_IDS = 50


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
            # words beside the marks: a terminal without an emoji font shows boxes for them
            mark = "✅ key set" if rec.get("key_set") else "❌ no key"
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
        w_mark = max(len(r[0]) for r in rows)
        w_name = max(len(r[1]) for r in rows)
        w_key = max(len(r[2]) for r in rows)
        return "\n".join(
            f"{mark.ljust(w_mark)} {name.ljust(w_name)}  {key.ljust(w_key)}  {where}"
            for mark, name, key, where in rows
        )

    __str__ = __repr__

    def _repr_markdown_(self) -> str:
        lines = ["| key | provider | variable | runs against |", "|---|---|---|---|"]
        for mark, name, key, where in self._rows():
            cells = (mark, f"**{name}**", f"`{key}`", where)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines)


# ====================================================================== the magics
@magics_class
class ImagineMagics(Magics):
    """``%imagine`` and ``%%reroll``, configurable with ``%config ImagineMagics.<trait>``.

    Every trait is checked when it is set: a bad value raises :class:`~traitlets.TraitError`
    naming the valid ones, and the setting keeps its previous value.
    """

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

    budget = Dict(
        {},
        help="Spending budget per provider, in its unit, for every kernel on this history: "
        "{'apiframe': 200} (per UTC day), {'apiframe': (200, 'week')}, '200/month' or "
        "'200/session'. A job that would pass it fails with BudgetExceeded, never sent. "
        "Default {}: none. Same as jupyter_imagine.configure(budget=...).",
    ).tag(config=True)
    prices = Dict(
        {},
        help="Your own prices per provider and price key, e.g. {'apiframe': {'imagine': 5}}, "
        "used instead of the published ones for estimates, budgets and the cost column. "
        "Default {}: the published prices. Same as jupyter_imagine.configure(prices=...).",
    ).tag(config=True)

    store = Unicode(
        "",
        help="The history this session uses: a postgresql:// URL (the team store) or a folder. "
        "Default '': JUPYTER_IMAGINE_STORE, else the personal history under "
        "JUPYTER_IMAGINE_HOME. Same as jupyter_imagine.configure(store=...).",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        #: The last job started through these magics (what ``%%reroll`` rerolls by default).
        self.last_job: Job | None = None

    @validate("default_provider")
    def _check_default_provider(self, proposal: Any) -> str:
        name = str(proposal["value"] or "").strip().lower()
        if name and name not in PROVIDERS:
            raise TraitError(
                f"ImagineMagics.default_provider must be one of: {', '.join(PROVIDERS)} "
                f"(or '' for JUPYTER_IMAGINE_PROVIDER, else apiframe), not {proposal['value']!r}"
            )
        return name

    @validate("timeout")
    def _check_timeout(self, proposal: Any) -> float | None:
        value = proposal["value"]
        if value is not None and not (math.isfinite(value) and value > 0):
            raise TraitError(
                f"ImagineMagics.timeout must be a positive number of seconds, or None for the "
                f"provider's own deadline, not {value!r}"
            )
        return value

    @validate("budget", "prices")
    def _apply_spend_setting(self, proposal: Any) -> dict[str, Any]:
        name, value = proposal["trait"].name, proposal["value"]
        try:
            api.configure(**{name: dict(value or {})})
        except ImagineError as exc:
            raise TraitError(f"ImagineMagics.{name}: {exc}") from None
        return dict(value or {})

    @validate("store")
    def _apply_store(self, proposal: Any) -> str:
        value = str(proposal["value"] or "").strip()
        try:
            api.configure(store=value or None)
        except ImagineError as exc:
            raise TraitError(f"ImagineMagics.store: {exc}") from None
        return value

    def _default_provider(self) -> str:
        return self.default_provider or api.default_provider()

    def _namespace(self) -> Mapping[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    # ------------------------------------------------------------------ %imagine
    @no_var_expand
    @line_magic
    def imagine(self, line: str) -> Any:
        """Start an image-generation job (the generated help replaces this at import)."""
        command = parse(line, _provider_params, default_provider=self._default_provider())
        run: Callable[[ParsedCommand], Any] = getattr(self, f"_{command.command}")
        return run(command)

    def _help(self, command: ParsedCommand) -> MagicHelp:
        return imagine_help(command.provider)

    def _providers(self, command: ParsedCommand) -> ProviderReport:
        return ProviderReport(api.provider_status())

    def _balance(self, command: ParsedCommand) -> Any:
        return api.balance(command.provider)

    def _history(self, command: ParsedCommand) -> Any:
        from .widgets import gallery

        return gallery(api.history(limit=command.limit or DEFAULT_HISTORY_LIMIT))

    def _job(self, command: ParsedCommand) -> Job:
        try:
            return api.job(interpolate(command.job_id or "", self._namespace()))
        except NotFound as exc:
            hint = "(for a prompt that starts with 'job', write %imagine -- job …)"
            raise NotFound(f"{exc} {hint}", provider=exc.provider) from None

    def _imagine(self, command: ParsedCommand) -> Job:
        namespace = self._namespace()
        prompt = interpolate(command.prompt, namespace)
        params = {key: interpolate(value, namespace) for key, value in command.params.items()}
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
    @cell_magic
    def reroll(self, line: str, cell: str) -> Job | MagicHelp:
        """Reroll a job with the cell body as the prompt (the generated help replaces this)."""
        command = parse_reroll(line)
        if command.help:
            return reroll_help()
        namespace = self._namespace()
        prompt = interpolate((cell or "").strip(), namespace).strip()
        if not prompt:
            raise UsageError("the cell is empty; write the new prompt in the %%reroll cell's body")
        return self._reroll(command, prompt, namespace)

    def _reroll(self, command: RerollCommand, prompt: str, namespace: Mapping[str, Any]) -> Job:
        timeout = command.timeout if command.timeout is not None else self.timeout
        parent = self._reroll_target(command.job_id, namespace)
        extra = {"timeout": timeout} if timeout is not None else {}
        child = parent.reroll(prompt=prompt, **extra)
        self.last_job = child
        logger.debug("reroll started %s job %s from %s", child.provider, child.id, parent.id)
        if command.wait or self.wait:
            child.wait(timeout)
        return child

    def _reroll_target(self, job_id: str | None, namespace: Mapping[str, Any]) -> Job:
        if job_id:
            return api.job(interpolate(job_id, namespace))
        if self.last_job is not None:
            return self.last_job
        record = api.get_engine().store.last()
        if record is None:
            raise UsageError(
                "no job to reroll: the history is empty; start one with %imagine PROMPT"
            )
        return api.job(record["id"])


# ``%imagine?`` / ``%%reroll?`` show the docstring: make it the real help (as magic_arguments
# does for its magics).
ImagineMagics.imagine.__doc__ = repr(imagine_help())
ImagineMagics.reroll.__doc__ = repr(reroll_help())


def _provider_params(name: str) -> Mapping[str, ParamSpec]:
    return provider_class(name).params


_REROLL_HELP = re.compile(r"%%reroll\s(?:.*\s)?(?:-h|--help)\s*$")


def reroll_help_without_body(lines: list[str]) -> list[str]:
    """Input transformer: let ``%%reroll -h`` run alone in a cell.

    IPython refuses a cell magic whose body is empty before the magic sees its line; a cell that
    is only ``%%reroll … -h`` gets an empty body line so the help can show.
    """
    if lines and _REROLL_HELP.match(lines[0].strip()) and not "".join(lines[1:]).strip():
        return [lines[0].rstrip("\n") + "\n", "\n"]
    return lines


def _recent_job_ids() -> list[str]:
    """The newest stored jobs' ids, for completion."""
    return [rec["id"] for rec in api.get_engine().store.records(limit=COMPLETED_JOB_IDS)]


# ====================================================================== extension hooks
def _drop_invalid_config(ipython: Any) -> None:
    """Forget ``ImagineMagics`` settings in the shell's config that its validators refuse.

    ``%config`` merges a value into the shell's config even when :class:`ImagineMagics` refused
    it; left there, it would break every later ``%load_ext``/``%reload_ext``.
    """
    section = ipython.config.get("ImagineMagics") if "ImagineMagics" in ipython.config else None
    probe = ImagineMagics()
    for name in list(section or ()):
        try:
            setattr(probe, name, section[name])
        except (TraitError, AttributeError) as exc:
            logger.warning("jupyter_imagine: ignoring ImagineMagics.%s: %s", name, exc)
            del section[name]


def load_ipython_extension(ipython: Any) -> None:
    """Register :class:`ImagineMagics` with ``ipython`` and start the engine.

    The instance is created with ``parent=ipython`` (so config files and ``%config`` reach it)
    and is the only :class:`ImagineMagics` in ``ipython.configurables``. Also installs the tab
    completion, the one-line display of ImagineErrors and :func:`reroll_help_without_body` (all
    removed again by :func:`unload_ipython_extension`). Starting the engine resumes the jobs an
    earlier session left unfinished.
    """
    _drop_invalid_config(ipython)
    magics = ImagineMagics(shell=ipython, parent=ipython)
    ipython.register_magics(magics)
    configurables = ipython.configurables
    configurables[:] = [c for c in configurables if not isinstance(c, ImagineMagics)]
    configurables.append(magics)
    _remove_matcher(ipython)
    ipython.Completer.custom_matchers.append(
        make_matcher(magics._default_provider, _recent_job_ids)
    )
    _magic_errors.install(ipython)
    if reroll_help_without_body not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(reroll_help_without_body)
    try:
        api.get_engine()
    except ImagineError as exc:  # e.g. an unusable JUPYTER_IMAGINE_HOME: the magics still load
        logger.warning("jupyter_imagine: the engine did not start: %s", exc)


def _remove_matcher(ipython: Any) -> None:
    matchers = ipython.Completer.custom_matchers
    matchers[:] = [m for m in matchers if getattr(m, "matcher_identifier", None) != MATCHER_ID]


def unload_ipython_extension(ipython: Any) -> None:
    """Undo :func:`load_ipython_extension`'s set-up: the configurable, the completion, the error
    display and the ``%%reroll -h`` transformer (the magics stay defined: IPython cannot
    unregister them)."""
    configurables = ipython.configurables
    configurables[:] = [c for c in configurables if not isinstance(c, ImagineMagics)]
    _remove_matcher(ipython)
    _magic_errors.uninstall(ipython)
    cleanup = ipython.input_transformers_cleanup
    cleanup[:] = [t for t in cleanup if t is not reroll_help_without_body]
