"""The magic's parser (``_magic_parser``): pure, no shell and no engine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from IPython.core.error import UsageError

import jupyter_imagine as ji
from jupyter_imagine._magic_parser import (
    ParsedCommand,
    RerollCommand,
    interpolate,
    parse_reroll,
    split_options,
)
from jupyter_imagine._magic_parser import parse as _parse
from jupyter_imagine.providers import PROVIDERS, ParamSpec, provider_class

PARAMS = {
    "aspect_ratio": ParamSpec("aspect_ratio"),
    "process_mode": ParamSpec("process_mode", choices=("fast", "turbo")),
}


def parse(line: str) -> ParsedCommand:
    return _parse(line, PARAMS, default_provider="apiframe")


@pytest.mark.parametrize(
    ("line", "prompt"),
    [
        ("a cat", "a cat"),
        ("   a  cat  ", "a  cat  "),
        ("a cat --ar 16:9 -w", "a cat --ar 16:9 -w"),
        ("-w a cat -p x", "a cat -p x"),
        ("-- -w a cat", "-w a cat"),
        ("--  two spaces", " two spaces"),
        ("--\tthe tab goes", "the tab goes"),
        ("-w -- -- a cat", "-- a cat"),
        ("\"quoted\" stays 'as typed'", "\"quoted\" stays 'as typed'"),
        ("{red, green}  $HOME  ::2 {{x}}", "{red, green}  $HOME  ::2 {{x}}"),
        ("a cat \"unclosed", "a cat \"unclosed"),
        ("providersX of the night", "providersX of the night"),
        ("Providers of the night", "Providers of the night"),
    ],
)
def test_parse_prompt_is_the_raw_rest_of_the_line(line, prompt):
    parsed = parse(line)
    assert parsed.command == "imagine" and parsed.prompt == prompt


def test_parse_options():
    parsed = parse("-p apiframe -w -t 30 --aspect_ratio 3:2 --process-mode=turbo a cat")
    assert parsed == ParsedCommand(
        prompt="a cat", provider="apiframe", wait=True, timeout=30.0,
        params={"aspect_ratio": "3:2", "process_mode": "turbo"},
    )
    assert parse("--provider=apiframe --wait --timeout=2.5 x") == ParsedCommand(
        prompt="x", provider="apiframe", wait=True, timeout=2.5
    )
    assert parse("-wt5 -papiframe x") == ParsedCommand(
        prompt="x", provider="apiframe", wait=True, timeout=5.0
    )
    assert parse("-wp apiframe x").provider == "apiframe"
    assert parse('--aspect_ratio "3:2" x').params == {"aspect_ratio": "3:2"}
    assert parse("--aspect_ratio 1:1 --aspect-ratio 2:3 x").params == {"aspect_ratio": "2:3"}


def test_parse_provider_parameters_are_checked_against_the_chosen_provider():
    by_provider = {"apiframe": PARAMS, "other": {"style": ParamSpec("style")}}
    lookup = by_provider.__getitem__
    kw = {"default_provider": "apiframe"}
    assert _parse("-p other --style oil x", lookup, **kw).params == {"style": "oil"}
    assert _parse("--style oil -p other x", lookup, **kw).params == {"style": "oil"}
    assert _parse("--style oil x", lookup, default_provider="other").provider is None
    with pytest.raises(UsageError, match=r"unknown option --style; .* apiframe's parameters"):
        _parse("--style oil x", lookup, default_provider="apiframe")
    with pytest.raises(UsageError, match=r"unknown option --aspect-ratio; .*other's.*--style"):
        _parse("-p other --aspect-ratio 1:1 x", lookup, **kw)


def test_parse_unknown_provider_raises_what_the_lookup_raises():
    with pytest.raises(ji.ConfigurationError, match="unknown provider 'nope'"):
        _parse("-p nope a cat", lambda name: provider_class(name).params, default_provider="x")


def test_parse_subcommands():
    assert parse("providers") == ParsedCommand(command="providers")
    assert parse("  history ") == ParsedCommand(command="history")
    assert parse("history 5") == ParsedCommand(command="history", limit=5)
    assert parse("job 3f2a9c") == ParsedCommand(command="job", job_id="3f2a9c")
    assert parse("-- providers").prompt == "providers"
    assert parse("balance") == ParsedCommand(command="balance")
    assert parse("balance apiframe") == ParsedCommand(command="balance", provider="apiframe")
    assert parse("-- balance of power").prompt == "balance of power"
    assert parse("-w history").prompt == "history"  # only the first word of the line counts


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "prompt is empty"),
        ("-w", "prompt is empty"),
        ("-- ", "prompt is empty"),
        ("--aspect_ratio", "needs a value"),
        ("--aspect_ratio --", "needs a value"),
        ("-p", "needs a value"),
        ("-p '' x", "needs a provider name"),
        ("- x", "lone '-'"),
        ("-wx cat", "unknown option -x"),
        ("--= x", "unknown option"),
        ("--nope 1 x", "unknown option --nope"),
        ("-t -1 x", "positive"),
        ("-t inf x", "positive"),
        ("-t abc x", "^-t/--timeout must be a positive number of seconds, not 'abc'$"),
        ("--wait=1 x", "takes no value"),
        ("--aspect_ratio \"3:2 x", "unclosed"),
        ("history five", "history takes one number"),
        ("job a b", "job takes one job id"),
        ("providers x", "takes no arguments"),
        ("balance a b", "balance takes one provider name at most"),
    ],
)
def test_parse_errors(line, message):
    with pytest.raises(UsageError, match=message) as info:
        parse(line)
    assert "\n" not in str(info.value)


def testinterpolate():
    ns = {"x": 3, "obj": SimpleNamespace(inner=SimpleNamespace(name="deep")), "é": "accent"}
    assert interpolate("{{x}} {{ x }} {{obj.inner.name}} {{é}}", ns) == "3 3 deep accent"
    untouched = "{red, green} {{red, green}, blue} {{ 1+1 }} {{x[0]}} {x} $x"
    assert interpolate(untouched, ns) == untouched
    with pytest.raises(UsageError, match=r"^unknown variable 'foo' in \{\{foo\}\}$"):
        interpolate("a {{foo}}", ns)
    with pytest.raises(UsageError, match=r"obj\.inner has no attribute 'nope'"):
        interpolate("{{obj.inner.nope}}", ns)


# ====================================================================== the split, once
@pytest.mark.parametrize(
    ("line", "argv", "prompt"),
    [
        ("-p apiframe --aspect_ratio 3:2 --process_mode turbo a red fox in snow",
         ["--provider=apiframe", "--aspect_ratio=3:2", "--process_mode=turbo"],
         "a red fox in snow"),
        ("--wait -- --a prompt that starts with dashes", ["--wait"],
         "--a prompt that starts with dashes"),
        ("a fox --ar 16:9 ::2 {red, green}", [], "a fox --ar 16:9 ::2 {red, green}"),
        ("-wt5 -p'api frame' x", ["--wait", "--timeout=5", "--provider=api frame"], "x"),
        ("-wp apiframe x", ["--wait", "--provider=apiframe"], "x"),
        ("--seed -1 x", ["--seed=-1"], "x"),  # a value may start with '-'
        ("-h", ["--help"], ""),
    ],
)
def test_split_options_gives_argv_with_attached_values_and_the_raw_prompt(line, argv, prompt):
    assert split_options(line) == (argv, prompt)


def test_readme_examples_send_the_prompt_untouched():
    lookup = lambda name: provider_class(name).params  # noqa: E731
    fox = _parse(
        "-p apiframe --aspect_ratio 3:2 --process_mode turbo a red fox in snow", lookup,
        default_provider="apiframe",
    )
    assert fox == ParsedCommand(
        prompt="a red fox in snow", provider="apiframe",
        params={"aspect_ratio": "3:2", "process_mode": "turbo"},
    )
    dashes = _parse("--wait -- --a prompt that starts with dashes", lookup,
                    default_provider="apiframe")
    assert dashes.prompt == "--a prompt that starts with dashes" and dashes.wait
    midjourney = "a {red, green} fox::2 cat::-0.5 --ar 16:9 --no trees"
    assert _parse(midjourney, lookup, default_provider="apiframe").prompt == midjourney


def test_every_provider_parameter_is_an_option_built_from_its_spec():
    for name, cls in PROVIDERS.items():
        for param in cls.params:
            for spelling in (param, param.replace("_", "-")):
                parsed = _parse(f"-p {name} --{spelling} 1 x", lambda n: PROVIDERS[n].params,
                                default_provider="apiframe")
                assert parsed.params == {param: "1"}, (name, spelling)


def test_values_stay_text_for_interpolation_and_the_provider_checks_them():
    parsed = parse("--process_mode {{mode}} x")  # not refused by the choices here …
    assert parsed.params == {"process_mode": "{{mode}}"}  # … the provider's spec checks it


def test_help_options_and_subcommand():
    assert parse("-h") == ParsedCommand(command="help")
    assert parse("--help") == ParsedCommand(command="help")
    assert parse("-p banatie --help a cat") == ParsedCommand(command="help", provider="banatie")
    assert parse("help") == ParsedCommand(command="help")
    assert parse("help blockade") == ParsedCommand(command="help", provider="blockade")
    assert parse("-- help me").prompt == "help me"
    with pytest.raises(UsageError, match="help takes one provider name"):
        parse("help me draw a cat")


def test_help_needs_no_provider_lookup():
    def refuse(name):
        raise AssertionError("looked up")

    assert _parse("-h", refuse, default_provider="nope").command == "help"


# ====================================================================== %%reroll's line
@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("", RerollCommand()),
        ("3f2a9c", RerollCommand(job_id="3f2a9c")),
        ("-w -t 30 3f2a9c", RerollCommand(job_id="3f2a9c", wait=True, timeout=30.0)),
        ("--wait", RerollCommand(wait=True)),
        ("-h", RerollCommand(help=True)),
        ("--help", RerollCommand(help=True)),
    ],
)
def test_parse_reroll(line, command):
    assert parse_reroll(line) == command


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--bogus", "unknown option --bogus; valid options: -w/--wait"),
        ("a b", "takes one JOB_ID at most, not also 'b'"),
        ("-t 0", "positive"),
        ("-t soon", "^-t/--timeout must be a positive number of seconds, not 'soon'$"),
        ("'unclosed", "could not read its options"),
        ("--wait=1", "--wait takes no value"),
    ],
)
def test_parse_reroll_errors(line, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_reroll(line)
    assert "\n" not in str(info.value)
