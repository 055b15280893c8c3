"""The magics' help (``_magic_help``): generated from the options, subcommands and ParamSpecs."""

from __future__ import annotations

import pytest

import jupyter_imagine as ji
from jupyter_imagine._magic_help import HelpSection, MagicHelp, imagine_help, reroll_help
from jupyter_imagine._magic_parser import IMAGINE_OPTIONS, REROLL_OPTIONS, SUBCOMMANDS
from jupyter_imagine.providers import PROVIDERS


def test_imagine_help_has_usage_options_subcommands_parameters_and_examples():
    text = repr(imagine_help())
    assert text.startswith("%imagine [-p NAME] [-w] [-t SECONDS] [--PARAM VALUE …] [--] PROMPT")
    for option in IMAGINE_OPTIONS:
        assert option.flags in text and option.help in text
    for sub in SUBCOMMANDS.values():
        assert f"%imagine {sub.name}" in text and sub.help in text
    for name, cls in PROVIDERS.items():
        assert f"{name} parameters:" in text
        for spec in cls.params.values():
            assert f"--{spec.name} " in text and spec.help in text
    assert "examples:" in text and "%imagine -- history of the lighthouse" in text
    assert "{{name}}" in text and "a lone -- ends them" in text


def test_parameter_rows_show_type_choices_and_default():
    text = repr(imagine_help())
    mode = next(line for line in text.splitlines() if "--process_mode" in line)
    assert "{fast,turbo}" in mode and " str " in mode
    expire = next(line for line in text.splitlines() if "--expire_mins" in line)
    assert " int " in expire and " 12 " in expire  # TNL's default
    template = next(line for line in text.splitlines() if "--template" in line)
    assert "CHOICE" in template and "photorealistic" in template  # a long list goes to the help


def test_help_narrowed_to_one_provider():
    text = repr(imagine_help("banatie"))
    assert "banatie parameters:" in text and "--flow_alias" in text
    assert "apiframe parameters" not in text and "--process_mode {" not in text
    assert "options:" in text and "subcommands" in text  # the rest stays
    with pytest.raises(ji.ConfigurationError, match="unknown provider 'nope'"):
        imagine_help("nope")


def test_markdown_for_the_notebook():
    md = imagine_help("apiframe")._repr_markdown_()
    assert md.startswith("```text\n%imagine [-p NAME]")
    assert "| option | what it does |" in md and "| `-p/--provider NAME` |" in md
    assert "| `--process_mode {fast,turbo}` | str | — | fast (default) or turbo |" in md
    assert "```python\n%imagine a lighthouse at dusk --ar 3:2" in md
    assert "\\|" not in md.split("**subcommands")[0]  # nothing needed escaping up there


def test_markdown_escapes_pipes_in_cells():
    help_ = MagicHelp(["u"], "i", [HelpSection("t", rows=(("a", "b"), ("x|y", "z")))])
    assert "| `x\\|y` | z |" in help_._repr_markdown_()


def test_reroll_help():
    text = repr(reroll_help())
    assert text.startswith("%%reroll [-w] [-t SECONDS] [JOB_ID]")
    for option in REROLL_OPTIONS:
        assert option.flags in text
    assert "cell body" in text and "%%reroll 3f2a9c" in text
    assert "```python\n%%reroll 3f2a9c" in reroll_help()._repr_markdown_()
