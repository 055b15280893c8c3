"""The help of ``%imagine`` and ``%%reroll``, generated from the options, subcommands and each
provider's :class:`~jupyter_imagine.providers.ParamSpec`.

:class:`MagicHelp` is what ``%imagine -h`` returns: Markdown in a notebook, plain text in a
terminal (its ``repr``); the plain text is also the magics' docstring, so ``%imagine?`` shows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._magic_parser import IMAGINE_OPTIONS, REROLL_OPTIONS, SUBCOMMANDS, Option
from .providers import PROVIDERS, ParamSpec, Provider, provider_class

__all__ = ["HelpSection", "MagicHelp", "imagine_help", "reroll_help"]


@dataclass(frozen=True)
class HelpSection:
    """One part of a help page.

    Attributes:
        title: the heading.
        rows: table rows (the first is the header), or ``()``.
        lines: text lines, shown as code (examples) when ``code`` is true (default ``False``).
    """

    title: str
    rows: tuple[tuple[str, ...], ...] = ()
    lines: tuple[str, ...] = ()
    code: bool = False


class MagicHelp:
    """A magic's help: ``repr`` is plain text (terminal), ``_repr_markdown_`` the notebook view."""

    def __init__(self, usage: Sequence[str], intro: str, sections: Sequence[HelpSection]) -> None:
        self.usage = tuple(usage)
        self.intro = intro
        self.sections = tuple(sections)

    def __repr__(self) -> str:
        out = [*self.usage, "", self.intro]
        for section in self.sections:
            out += ["", f"{section.title}:"]
            if section.rows:
                body = section.rows[1:]
                widths = [max(len(row[k]) for row in body) for k in range(len(body[0]) - 1)]
                for row in body:
                    cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
                    out.append("  " + "  ".join([*cells, row[-1]]).rstrip())
            out += [f"  {line}" if line else "" for line in section.lines]
        return "\n".join(out)

    __str__ = __repr__

    def _repr_markdown_(self) -> str:
        out = ["```text", *self.usage, "```", "", self.intro]
        for section in self.sections:
            out += ["", f"**{section.title}**", ""]
            if section.rows:
                header, *body = section.rows
                out += [_md_row(header), "|" + "---|" * len(header)]
                out += [_md_row(tuple(f"`{c}`" if k == 0 else c for k, c in enumerate(row)))
                        for row in body]
            if section.code:
                out += ["```python", *section.lines, "```"]
            else:
                out += list(section.lines)
        return "\n".join(out)


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _option_rows(options: Sequence[Option]) -> tuple[tuple[str, ...], ...]:
    return (("option", "what it does"), *((o.flags, o.help) for o in options))


def _param_row(spec: ParamSpec) -> tuple[str, str, str, str]:
    choices = ",".join(map(str, spec.choices or ()))
    value = f"{{{choices}}}" if choices and len(choices) <= 20 else "CHOICE" if choices else "VALUE"
    more = f" (one of: {choices.replace(',', ', ')})" if value == "CHOICE" else ""
    default = "—" if spec.default is None else str(spec.default)
    kind = getattr(spec.type, "__name__", str(spec.type))
    return f"--{spec.name} {value}", kind, default, (spec.help or "") + more


def _param_section(cls: type[Provider]) -> HelpSection:
    specs = list(cls.params.values())
    rows = (("parameter", "type", "default", "what it does"), *map(_param_row, specs))
    return HelpSection(f"{cls.name} parameters", rows=rows if specs else (),
                       lines=() if specs else ("(none)",))


_INTRO = """\
Start an image-generation job and return its Job at once (job = %imagine … works).

The prompt is everything from its first word to the end of the line, sent untouched: Midjourney
flags (--ar 16:9), ::weights, {red, green} permutations, quotes and $ reach the provider exactly
as typed. The magic's own options come first; a lone -- ends them, so a prompt may start with '-'
or with a subcommand word. {{name}} or {{name.attr}} is replaced by str() of that variable;
nothing else is interpolated or evaluated. Provider parameters are --name VALUE or
--name=VALUE (- and _ both work in the name). Defaults come from %config ImagineMagics
(default_provider, wait, timeout)."""

_EXAMPLES = (
    "%imagine a lighthouse at dusk --ar 3:2",
    "job = %imagine -p apiframe --process_mode turbo a {red, green} fox::2 cat::1 --ar 16:9",
    "%imagine --wait -t 120 {{subject}} in the style of {{style.name}}",
    "%imagine --aspect-ratio 3:2 -- -a prompt that starts with a dash",
    "%imagine -- history of the lighthouse",
    "%imagine history 5",
    "%imagine help banatie",
    "",
    "then: %%reroll [JOB_ID] with the new prompt as the cell body.",
)


def imagine_help(provider: str | None = None) -> MagicHelp:
    """``%imagine``'s help: every provider's parameters, or only ``provider``'s (default all).

    Raises:
        ConfigurationError: ``provider`` is not a provider.
    """
    classes = [provider_class(provider)] if provider else list(PROVIDERS.values())
    subcommands = (("subcommand", "what it does"), *(
        (f"%imagine {s.name} {s.args}".rstrip(), s.help) for s in SUBCOMMANDS.values()
    ))
    return MagicHelp(
        usage=(
            "%imagine [-p NAME] [-w] [-t SECONDS] [--PARAM VALUE …] [--] PROMPT",
            "%imagine " + " | ".join(f"{s.name} {s.args}".rstrip() for s in SUBCOMMANDS.values()),
        ),
        intro=_INTRO,
        sections=(
            HelpSection("options", rows=_option_rows(IMAGINE_OPTIONS)),
            HelpSection("subcommands (when the line starts with one of these words)",
                        rows=subcommands),
            *map(_param_section, classes),
            HelpSection("examples", lines=_EXAMPLES, code=True),
        ),
    )


_REROLL_INTRO = """\
Reroll a job with the cell body as the new prompt; returns the new Job.

JOB_ID is any id jupyter_imagine.job() accepts (local id, provider id, unique prefix of 6+
characters). Without it: the last job started with %imagine or %%reroll in this session, else
the newest job in the history. The body is stripped, {{name}} / {{name.attr}} are interpolated,
and it must not be empty. A job that offers 🔄 (a finished Midjourney grid) presses it; any
other (an upscale, a job still running, Banatie, Blockade, neuroflash) starts a new job of the
same provider with its parameters, linked to it."""

_REROLL_EXAMPLES = (
    "%%reroll 3f2a9c",
    "a lighthouse at dawn, {fog, rain} --ar 3:2",
    "",
    "%%reroll --wait",
    "{{subject}} at dawn",
)


def reroll_help() -> MagicHelp:
    """``%%reroll``'s help."""
    return MagicHelp(
        usage=("%%reroll [-w] [-t SECONDS] [JOB_ID]", "NEW PROMPT (the cell body)"),
        intro=_REROLL_INTRO,
        sections=(
            HelpSection("options", rows=_option_rows(REROLL_OPTIONS)),
            HelpSection("examples (the cell body is the new prompt)", lines=_REROLL_EXAMPLES,
                        code=True),
        ),
    )
