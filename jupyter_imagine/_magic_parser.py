"""Reading the ``%imagine`` and ``%%reroll`` lines: pure functions from text to a command.

No IPython state and no engine, so every rule is testable alone (parsing apart from execution,
as JupySQL does it). The rules of ``%imagine [options] PROMPT``:

- The magic's own options come first. The first word that does not start with ``-`` begins the
  prompt; a lone ``--`` ends the options and everything after it (minus one space) is the prompt.
- The prompt is the raw rest of the line: never split and re-joined, so spacing, quotes, braces,
  ``$`` and Midjourney flags (``--ar 16:9``, ``::2``, ``{red, green}``) reach the provider as typed.
- Options are :data:`IMAGINE_OPTIONS` plus the chosen provider's parameters, built as argparse
  arguments from their :class:`~jupyter_imagine.providers.ParamSpec`; ``--name VALUE``,
  ``--name=VALUE``, ``-`` or ``_`` in the name, clustered short options (``-wp apiframe``).
- When the first word is exactly one of :data:`SUBCOMMANDS` it is a subcommand; a prompt that
  starts with one of these words goes after ``--``.
- ``{{name}}`` / ``{{ name.attr }}`` is the only interpolation (:func:`interpolate`).

Usage mistakes raise :class:`~IPython.core.error.UsageError` with a one-line message.
"""

from __future__ import annotations

import argparse
import functools
import math
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from IPython.core.error import UsageError

from .providers import ParamSpec

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "IMAGINE_OPTIONS",
    "REROLL_OPTIONS",
    "SUBCOMMANDS",
    "Option",
    "ParamSource",
    "ParsedCommand",
    "RerollCommand",
    "Subcommand",
    "check_timeout",
    "interpolate",
    "parse",
    "parse_reroll",
    "split_options",
]

#: Rows ``%imagine history`` shows when no N is given.
DEFAULT_HISTORY_LIMIT = 20

ParamSource = Callable[[str], Mapping[str, ParamSpec]] | Mapping[str, ParamSpec]


@dataclass(frozen=True)
class Option:
    """One of a magic's own options; ``metavar`` is ``None`` for a flag (takes no value)."""

    short: str
    long: str
    metavar: str | None
    help: str

    @property
    def flags(self) -> str:
        """How the help writes it: ``-p/--provider NAME``."""
        return f"-{self.short}/--{self.long}" + (f" {self.metavar}" if self.metavar else "")


_WAIT = (
    "block until the {job} is finished, showing its progress, then return it; Ctrl-C stops "
    "waiting, not the job (default: return at once)"
)
_TIMEOUT = "the {job}'s deadline, also the bound of --wait (default: the provider's own)"

#: ``%imagine``'s own options, in the order the help lists them.
IMAGINE_OPTIONS: tuple[Option, ...] = (
    Option("p", "provider", "NAME", "the provider (default: ImagineMagics.default_provider, "
           "else JUPYTER_IMAGINE_PROVIDER, else apiframe)"),
    Option("w", "wait", None, _WAIT.format(job="job")),
    Option("t", "timeout", "SECONDS", _TIMEOUT.format(job="job")),
    Option("h", "help", None, "show this help (with -p NAME: only that provider's parameters)"),
)
#: ``%%reroll``'s own options (its one positional is the job id).
REROLL_OPTIONS: tuple[Option, ...] = (
    Option("w", "wait", None, _WAIT.format(job="new job")),
    Option("t", "timeout", "SECONDS", _TIMEOUT.format(job="new job")),
    Option("h", "help", None, "show this help"),
)


@dataclass(frozen=True)
class Subcommand:
    """A word that, first on the line, runs a subcommand instead of starting a job."""

    name: str
    args: str
    help: str
    max_args: int
    check: Callable[[list[str]], bool] = lambda args: True


#: The subcommands by name, in the order the help lists them.
SUBCOMMANDS: dict[str, Subcommand] = {
    s.name: s
    for s in (
        Subcommand("providers", "", "which providers have a key (✅/❌), sandbox or base URL", 0),
        Subcommand(
            "history", "[N]", f"the newest N jobs (default {DEFAULT_HISTORY_LIMIT}) as a "
            "gallery: filter by provider, status, prompt; click one to open it", 1,
            lambda args: all(a.isdigit() for a in args),
        ),
        Subcommand("job", "ID", "a stored job by local id, provider id or unique prefix", 1,
                   lambda args: len(args) == 1 and bool(args[0].strip())),
        Subcommand("balance", "[PROVIDER]", "what each provider reports left (credits, fast "
                   "hours, quota) and when it was read", 1),
        Subcommand("help", "[PROVIDER]", "this help, or only one provider's parameters", 1),
    )
}
_ARITY = {"providers": "no arguments", "history": "one number N (default 20)",
          "job": "one job id", "help": "one provider name at most",
          "balance": "one provider name at most"}


@dataclass(frozen=True)
class ParsedCommand:
    """What one ``%imagine`` line asks for.

    Attributes:
        command: ``"imagine"`` (default), or a subcommand: ``"providers"``, ``"history"``,
            ``"job"``, ``"help"``.
        prompt: the raw prompt text, exactly as typed (``{{var}}`` not yet interpolated).
        provider: the provider given with ``-p`` (for ``help``: the provider to narrow it to),
            else ``None`` (the default applies).
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


@dataclass(frozen=True)
class RerollCommand:
    """What a ``%%reroll`` line asks for (the cell body, the prompt, is read apart).

    Attributes:
        job_id: the job to reroll, else ``None`` (the last one).
        wait: ``-w/--wait`` given (default ``False``).
        timeout: ``-t/--timeout`` seconds, else ``None``.
        help: ``-h/--help`` given (default ``False``).
    """

    job_id: str | None = None
    wait: bool = False
    timeout: float | None = None
    help: bool = False


# ====================================================================== argparse
class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line :class:`UsageError` instead of printing and exiting."""

    option_text = ""

    def error(self, message: str) -> NoReturn:
        flag = re.match(r"argument (\S+): ignored explicit argument", message)
        if flag:
            message = f"option --{flag.group(1).split('/--')[-1]} takes no value"
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown and unknown.group(1).startswith("-"):
            message = f"unknown option {unknown.group(1)}; valid options: {self.option_text}"
        elif unknown:
            message = f"{self.prog} takes one JOB_ID at most, not also {unknown.group(1)!r}"
        raise UsageError(message)


def _parser(options: tuple[Option, ...], params: Mapping[str, ParamSpec] = {}) -> _Parser:
    """The declarative parser: the magic's ``options`` plus one ``--name`` per parameter."""
    return _build(options, tuple((name, spec.help) for name, spec in params.items()))


@functools.lru_cache(maxsize=64)
def _build(
    options: tuple[Option, ...], params: tuple[tuple[str, str], ...], *, prog: str = "%imagine",
    positional: str | None = None,
) -> _Parser:
    # Cached: building costs more than parsing, and parsing leaves the parser as it was.
    parser = _Parser(prog=prog, add_help=False, allow_abbrev=False)
    parser.option_text = ", ".join(o.flags for o in options)
    for opt in options:
        names = (f"-{opt.short}", f"--{opt.long}")
        if opt.metavar is None:
            parser.add_argument(*names, dest=opt.long, action="store_true")
        else:
            kind = _seconds if opt.long == "timeout" else str
            parser.add_argument(*names, dest=opt.long, metavar=opt.metavar, type=kind)
    for name, text in params:
        spellings = dict.fromkeys((f"--{name}", f"--{name.replace('_', '-')}"))
        parser.add_argument(*spellings, dest=f"param.{name}", metavar="VALUE", help=text)
    if positional is not None:
        parser.add_argument(positional, nargs="?")
    return parser


# ====================================================================== splitting
_SEPARATOR = re.compile(r"--(?:\s|$)")


def _skip_space(line: str, i: int) -> int:
    while i < len(line) and line[i].isspace():
        i += 1
    return i


def _word(line: str, i: int) -> tuple[str, int]:
    """The shell-style word at ``line[i]`` (quotes and backslashes as in a POSIX shell) and the
    index after it. Only option words and values are read this way; the prompt never is."""
    lexer = shlex.shlex(line[i:], posix=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    try:
        word = lexer.get_token()
    except ValueError as exc:
        what = "unclosed quote" if "quotation" in str(exc) else "a \\ that escapes nothing"
        raise UsageError(f"{what} in the options at {line[i:]!r}") from None
    return word or "", i + lexer.instream.tell()


def _expand(word: str, options: Sequence[Option]) -> tuple[list[str], str | None]:
    """The argv items one option word stands for, and the option still waiting for its value."""
    if word.startswith("--"):
        name = word[2:]
        complete = "=" in name or any(o.long == name and o.metavar is None for o in options)
        return ([word], None) if complete else ([], name)
    by_letter = {o.short: o for o in options}
    out: list[str] = []
    for k, letter in enumerate(word[1:], start=1):
        opt = by_letter.get(letter)
        if opt is None:
            valid = ", ".join(o.flags for o in options)
            raise UsageError(
                f"unknown option -{letter} in {word!r}; valid options: {valid} (a prompt that "
                "starts with '-' goes after --)"
            )
        if opt.metavar is None:
            out.append(f"--{opt.long}")
            continue
        value = word[k + 1 :].removeprefix("=")
        if not value:
            return out, opt.long
        return [*out, f"--{opt.long}={value}"], None
    if not out:
        raise UsageError(
            "a lone '-' is not an option (a prompt that starts with '-' goes after --)"
        )
    return out, None


def split_options(line: str, options: Sequence[Option] = IMAGINE_OPTIONS) -> tuple[list[str], str]:
    """Split ``line`` once: the option words as argv (every value attached, ``--name=VALUE``, so
    argparse never guesses) and the untouched prompt (the raw rest of the line)."""
    argv: list[str] = []
    i = _skip_space(line, 0)
    while i < len(line) and line[i] == "-":
        if _SEPARATOR.match(line, i):
            return argv, line[i + 3 :]
        word, i = _word(line, i)
        items, waiting = _expand(word, options)
        argv += items
        if waiting is not None:
            i = _skip_space(line, i)
            if i >= len(line) or _SEPARATOR.match(line, i):
                spelled = word if word.startswith("--") else f"-{word[-1]}"
                raise UsageError(f"option {spelled} needs a value, e.g. {spelled} VALUE")
            value, i = _word(line, i)
            argv.append(f"--{waiting}={value}")
        i = _skip_space(line, i)
    return argv, line[i:]


# ====================================================================== parsing
#: What a bad ``-t/--timeout`` is told, the value shown after it.
_BAD_TIMEOUT = "-t/--timeout must be a positive number of seconds, not "


def _seconds(text: str) -> float:
    """``-t/--timeout``'s value as seconds; anything but a number is said the way
    :func:`check_timeout` says a number out of range."""
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{_BAD_TIMEOUT}{text!r}") from None


def check_timeout(timeout: float | None) -> float | None:
    """``timeout`` if it is ``None`` or a positive finite number of seconds."""
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"{_BAD_TIMEOUT}{timeout:g}")
    return timeout


def _subcommand(name: str, rest: str) -> ParsedCommand:
    try:
        args = shlex.split(rest)
    except ValueError as exc:
        raise UsageError(f"{name} could not read {rest.strip()!r}: {exc}") from None
    sub = SUBCOMMANDS[name]
    if len(args) > sub.max_args or not sub.check(args):
        given = f", not {' '.join(args)!r}" if args else ""
        raise UsageError(
            f"{name} takes {_ARITY[name]}{given} (for a prompt that starts with {name!r}, "
            f"write %imagine -- {name} …)"
        )
    first = args[0].strip() if args else None
    if name == "history":
        return ParsedCommand(command=name, limit=int(first) if first else None)
    return ParsedCommand(command=name, job_id=first if name == "job" else None,
                         provider=first if name in ("help", "balance") else None)


def _unknown(option: str, provider: str, accepted: Mapping[str, ParamSpec]) -> str:
    own = ", ".join(o.flags for o in IMAGINE_OPTIONS)
    theirs = ", ".join(f"--{p}" for p in accepted) or "none"
    return (
        f"unknown option {option}; valid options: {own}, and {provider}'s parameters: {theirs} "
        "(Midjourney flags such as --ar go in the prompt, after its first word)"
    )


def _provider_option(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise UsageError("option -p/--provider needs a provider name, e.g. -p apiframe")
    return value.strip() if value is not None else None


def parse(line: str, provider_params: ParamSource, *, default_provider: str) -> ParsedCommand:
    """Split a ``%imagine`` line into options and the raw prompt, then parse the options in one
    declarative argparse pass (the provider is read first: it decides which parameters exist).

    Args:
        line: the text after ``%imagine``.
        provider_params: the parameters a provider accepts, as a function of the provider's name
            (``lambda name: provider_class(name).params``; it may raise for an unknown name) or
            one mapping used whatever the provider.
        default_provider: the provider when ``-p`` is not given.

    Raises:
        UsageError: an unknown option, a missing value, an empty prompt, bad subcommand arguments.
        ImagineError: whatever ``provider_params`` raises (an unknown provider).
    """
    words = line.split(None, 1)
    if words and words[0] in SUBCOMMANDS:
        return _subcommand(words[0], words[1] if len(words) > 1 else "")
    argv, prompt = split_options(line)
    own, _ = _parser(IMAGINE_OPTIONS).parse_known_args(argv)
    provider = _provider_option(own.provider)
    if own.help:
        return ParsedCommand(command="help", provider=provider)
    chosen = provider or default_provider
    accepted = provider_params(chosen) if callable(provider_params) else provider_params
    options, unknown = _parser(IMAGINE_OPTIONS, accepted).parse_known_args(argv)
    if unknown:
        raise UsageError(_unknown(unknown[0].partition("=")[0] or unknown[0], chosen, accepted))
    if not prompt.strip():
        raise UsageError(
            "the prompt is empty; write %imagine [options] PROMPT, e.g. %imagine a lighthouse "
            "at dusk (see %imagine -h for the options)"
        )
    params = {name: getattr(options, f"param.{name}") for name in accepted}
    return ParsedCommand(
        prompt=prompt,
        provider=provider,
        wait=options.wait,
        timeout=check_timeout(options.timeout),
        params={name: value for name, value in params.items() if value is not None},
    )


def parse_reroll(line: str) -> RerollCommand:
    """Parse a ``%%reroll`` line: :data:`REROLL_OPTIONS` and an optional job id."""
    try:
        words = shlex.split(line)
    except ValueError as exc:  # unbalanced quotes in the line
        raise UsageError(f"%%reroll could not read its options {line!r}: {exc}") from None
    args = _build(REROLL_OPTIONS, (), prog="%%reroll", positional="job_id").parse_args(words)
    return RerollCommand(
        job_id=args.job_id, wait=args.wait, timeout=check_timeout(args.timeout), help=args.help
    )


# {{name}}, {{name.attr.attr}}, spaces allowed inside the braces; nothing else is evaluated.
_VARIABLE = re.compile(r"\{\{\s*([^\W\d]\w*(?:\.[^\W\d]\w*)*)\s*\}\}")


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """``text`` with each ``{{name}}`` / ``{{name.attr}}`` replaced by ``str()`` of its value.

    Nothing is evaluated; ``{{`` followed by anything else (``{{red, green}, blue}``, a nested
    permutation) is left untouched.

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
