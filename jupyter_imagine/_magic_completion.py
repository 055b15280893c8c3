"""Tab completion for ``%imagine`` and ``%%reroll`` through IPython's matcher API (v2).

:func:`candidates` is pure (text before the cursor → what to offer) and reads the same option,
subcommand and :class:`~jupyter_imagine.providers.ParamSpec` tables as the parser and the help:
option names after ``-``, provider names after ``-p``, the provider's parameter names and their
enumerated values (``--process_mode t`` → ``turbo``), subcommands as the first word, and recent
job ids after ``%%reroll`` / ``%imagine job``. :func:`make_matcher` wraps it for
``shell.Completer.custom_matchers``; once the prompt has begun nothing is offered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from IPython.core.completer import CompletionContext, SimpleCompletion, context_matcher

from ._magic_parser import IMAGINE_OPTIONS, REROLL_OPTIONS, SUBCOMMANDS, Option
from ._secrets import get_logger
from .providers import PROVIDERS

logger = get_logger(__name__)

__all__ = ["MATCHER_ID", "Candidates", "candidates", "make_matcher"]

#: The matcher's identifier in IPython's completer (``IPCompleter.disable_matchers`` takes it).
MATCHER_ID = "jupyter_imagine.magics"

#: (the fragment being completed, [(completion, type) …]); ``None``: not ours to complete.
Candidates = tuple[str, list[tuple[str, str]]] | None

_IMAGINE = re.compile(r"(?:^|[\s=(])%imagine\s(.*)\Z", re.S)
_REROLL = re.compile(r"\s*%%reroll\s(.*)\Z", re.S)


def _option_names(options: Sequence[Option], params: Iterable[str]) -> list[tuple[str, str]]:
    names = [n for o in options for n in (f"-{o.short}", f"--{o.long}")]
    return [(n, "option") for n in names] + [(f"--{p}", "param") for p in params]


def _waiting_for(word: str, options: Sequence[Option]) -> str | None:
    """The option still waiting for its value after ``word`` (tolerant: ``None`` if unsure)."""
    if word.startswith("--"):
        name = word[2:]
        flags = {o.long for o in options if o.metavar is None}
        return None if "=" in name or name in flags or not name else name
    by_letter = {o.short: o for o in options}
    for k, letter in enumerate(word[1:], start=1):
        opt = by_letter.get(letter)
        if opt is None or opt.metavar is not None:
            return opt.long if opt is not None and k == len(word) - 1 else None
    return None


def _values(option: str, provider: str) -> list[tuple[str, str]]:
    if option == "provider":
        return [(name, "provider") for name in PROVIDERS]
    cls = PROVIDERS.get(provider)
    spec = cls.params.get(option.replace("-", "_")) if cls is not None else None
    if spec is None:
        return []
    choices = spec.choices or (("true", "false") if spec.type is bool else ())
    return [(str(c), "value") for c in choices]


def _walk(words: Sequence[str], options: Sequence[Option]) -> tuple[str | None, str | None, bool]:
    """Over the finished option words: (``-p``'s value, the option waiting, prompt begun)."""
    provider = waiting = None
    for word in words:
        if waiting is not None:
            provider = word if waiting == "provider" else provider
            waiting = None
        elif word == "--" or not word.startswith("-"):
            return provider, None, True
        elif word.startswith("--provider="):
            provider = word.partition("=")[2]
        else:
            waiting = _waiting_for(word, options)
    return provider, waiting, False


def _imagine(done: list[str], fragment: str, default_provider: str,
             job_ids: Callable[[], Iterable[str]]) -> list[tuple[str, str]]:
    if done and done[0] in SUBCOMMANDS:
        if len(done) == 1 and done[0] == "job":
            return [(i, "job") for i in job_ids()]
        if len(done) == 1 and done[0] == "help":
            return [(name, "provider") for name in PROVIDERS]
        return []
    provider, waiting, prompt = _walk(done, IMAGINE_OPTIONS)
    if prompt:
        return []
    provider = provider or default_provider
    if waiting is not None:
        return _values(waiting, provider)
    if fragment.startswith("--") and "=" in fragment:
        return _values(fragment[2:].partition("=")[0], provider)
    cls = PROVIDERS.get(provider)
    options = _option_names(IMAGINE_OPTIONS, cls.params if cls is not None else ())
    if fragment.startswith("-"):
        return options
    if done:  # a word after the options begins the prompt
        return [] if fragment else options
    return [(s, "subcommand") for s in SUBCOMMANDS] + ([] if fragment else options)


def _reroll(done: list[str], fragment: str,
            job_ids: Callable[[], Iterable[str]]) -> list[tuple[str, str]]:
    _, waiting, positional = _walk(done, REROLL_OPTIONS)
    if waiting is not None or positional:
        return []
    if fragment.startswith("-"):
        return _option_names(REROLL_OPTIONS, ())
    return [(i, "job") for i in job_ids()]


def candidates(
    before: str, *, default_provider: str, job_ids: Callable[[], Iterable[str]]
) -> Candidates:
    """What to offer when ``before`` is the text of the line up to the cursor.

    Args:
        before: the current line up to the cursor (``job = %imagine -p ``).
        default_provider: the provider whose parameters complete when no ``-p`` is given.
        job_ids: the recent job ids, newest first (called only where an id is completed).
    """
    imagine, reroll = _IMAGINE.search(before), _REROLL.match(before)
    match = imagine or reroll
    if match is None:
        return None
    words = match.group(1).split()
    if words and not match.group(1)[-1:].isspace():
        fragment = words.pop()
    else:
        fragment = ""
    if imagine:
        found = _imagine(words, fragment, default_provider, job_ids)
    else:
        found = _reroll(words, fragment, job_ids)
    if fragment.startswith("--") and "=" in fragment:
        fragment = fragment.partition("=")[2]
    return fragment, [(text, kind) for text, kind in found if text.startswith(fragment)]


def make_matcher(
    default_provider: Callable[[], str], job_ids: Callable[[], Iterable[str]]
) -> Any:
    """A matcher for ``shell.Completer.custom_matchers`` (identifier :data:`MATCHER_ID`).

    Args:
        default_provider: returns the provider used without ``-p`` (read at each completion).
        job_ids: returns recent job ids, newest first; an error there completes no ids.
    """

    def safe_ids() -> list[str]:
        try:
            return list(job_ids())
        except Exception as exc:  # completion must never raise into the shell
            logger.debug("no job ids to complete: %s", exc)
            return []

    def safe_default() -> str:
        try:
            return default_provider()
        except Exception as exc:  # a bad JUPYTER_IMAGINE_PROVIDER: say it when the magic runs
            logger.debug("no default provider to complete for: %s", exc)
            return ""

    @context_matcher(identifier=MATCHER_ID)
    def imagine_matcher(context: CompletionContext) -> dict[str, Any]:
        found = candidates(
            context.text_until_cursor, default_provider=safe_default(), job_ids=safe_ids
        )
        if found is None:
            return {"completions": [], "suppress": False}
        fragment, items = found
        return {
            "completions": [SimpleCompletion(text, type=kind) for text, kind in items],
            "matched_fragment": fragment,
            "suppress": True,
            "ordered": True,
        }

    return imagine_matcher
