"""Tab completion of ``%imagine`` / ``%%reroll``: pure ``candidates``, then IPython's completer."""

from __future__ import annotations

import pytest
from IPython.core.completer import provisionalcompleter

import jupyter_imagine as ji
from jupyter_imagine._magic_completion import MATCHER_ID, candidates
from jupyter_imagine.providers import PROVIDERS

IDS = ["3f2a9c00-aaaa", "3f2b1100-bbbb", "9e8d7c00-cccc"]


def offered(before: str, default_provider: str = "apiframe") -> list[str] | None:
    found = candidates(before, default_provider=default_provider, job_ids=lambda: IDS)
    return None if found is None else [text for text, _ in found[1]]


# ====================================================================== candidates (pure)
def test_not_our_line_is_left_alone():
    assert offered("print(1") is None
    assert offered("%imagin") is None  # the magic's own name: IPython completes that
    assert offered("x = 1  # %%reroll ") is None


def test_option_names_after_a_dash():
    own = ["-p", "--provider", "-w", "--wait", "-t", "--timeout", "-h", "--help"]
    assert offered("%imagine -") == own + [f"--{p}" for p in PROVIDERS["apiframe"].params]
    assert offered("%imagine --w") == ["--wait", "--webhook_url", "--webhook_secret"]
    assert offered("%imagine -w --proc") == ["--process_mode"]


def test_provider_names_after_p():
    assert offered("%imagine -p ") == list(PROVIDERS)
    assert offered("%imagine --provider ba") == ["banatie"]
    assert offered("%imagine -wp b") == ["banatie", "blockade"]
    assert offered("%imagine help ") == list(PROVIDERS)


def test_the_chosen_providers_parameters_and_their_values():
    assert "--template" in offered("%imagine -p banatie --")
    assert "--template" not in offered("%imagine --")  # apiframe has none
    assert "--template" in offered("%imagine --", default_provider="banatie")
    assert offered("%imagine --process_mode ") == ["fast", "turbo"]
    assert offered("%imagine --process-mode t") == ["turbo"]
    assert offered("%imagine --process_mode=t") == ["turbo"]
    assert offered("%imagine -p banatie --aspect_ratio 1") == ["1:1", "16:9"]
    assert offered("%imagine --provider=blockade --enhance_prompt ") == ["true", "false"]
    assert offered("%imagine --aspect_ratio ") == []  # free text: nothing to offer


def test_subcommands_first_and_job_ids_after_job():
    assert offered("%imagine h") == ["history", "help"]
    assert offered("%imagine ")[:5] == ["providers", "history", "job", "balance", "help"]
    assert offered("%imagine job 3f2") == IDS[:2]
    assert offered("%imagine history ") == []


def test_nothing_once_the_prompt_has_begun():
    assert offered("%imagine a lighthouse -") == []
    assert offered("%imagine -w a lighthouse --pro") == []
    assert offered("%imagine -- -") == []
    assert offered("%imagine -w his") == []  # not first on the line: a prompt word


def test_reroll_job_ids_and_options():
    assert offered("%%reroll ") == IDS
    assert offered("%%reroll 3f2a") == IDS[:1]
    assert offered("%%reroll -w 9") == IDS[2:]
    assert offered("%%reroll --") == ["--wait", "--timeout", "--help"]
    assert offered("%%reroll -t ") == []
    assert offered("%%reroll 3f2a9c00-aaaa ") == []  # one job id at most


def test_assignment_form():
    assert offered("job = %imagine -p ") == list(PROVIDERS)


# ====================================================================== through IPython
@pytest.fixture
def shell(engine):
    """A real InteractiveShell with the extension loaded; unloaded again afterwards."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_imagine")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "jupyter_imagine")


def completions(shell, text: str) -> list[str]:
    with provisionalcompleter():
        return [c.text for c in shell.Completer.completions(text, len(text))]


def test_shell_completer_offers_providers_not_python_keywords(shell):
    assert completions(shell, "%imagine -p ") == list(PROVIDERS)
    assert completions(shell, "%imagine -p bl") == ["blockade"]


def test_shell_completer_options_values_and_subcommands(shell):
    assert "--aspect_ratio" in completions(shell, "%imagine --a")
    assert completions(shell, "%imagine --process_mode tu") == ["turbo"]
    assert completions(shell, "%imagine prov") == ["providers"]
    assert completions(shell, "%%reroll -") == ["-w", "--wait", "-t", "--timeout", "-h", "--help"]


def test_shell_completer_offers_recent_job_ids(shell):
    jobs = [ji.imagine(f"a lighthouse number {i}") for i in range(3)]
    newest_first = [job.id for job in reversed(jobs)]
    assert completions(shell, "%%reroll ") == newest_first
    assert completions(shell, f"%imagine job {jobs[0].id[:8]}") == [jobs[0].id]
    for job in jobs:
        job.wait(60)


def test_shell_completer_follows_the_configured_default_provider(shell):
    shell.run_line_magic("config", 'ImagineMagics.default_provider = "banatie"')
    try:
        assert "--template" in completions(shell, "%imagine --t")
    finally:
        shell.config.pop("ImagineMagics", None)


def test_shell_completer_survives_a_bad_default_provider(shell, monkeypatch):
    monkeypatch.setenv("JUPYTER_IMAGINE_PROVIDER", "midjourney")  # the magic says so when run
    assert completions(shell, "%imagine -p bl") == ["blockade"]
    assert "--wait" in completions(shell, "%imagine --w")


def test_load_registers_the_matcher_once_and_unload_removes_it(engine):
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ids = lambda: [getattr(m, "matcher_identifier", None) for m in ip.Completer.custom_matchers]  # noqa: E731
    ip.run_line_magic("load_ext", "jupyter_imagine")
    ip.run_line_magic("reload_ext", "jupyter_imagine")
    assert ids().count(MATCHER_ID) == 1
    ip.run_line_magic("unload_ext", "jupyter_imagine")
    assert MATCHER_ID not in ids()
    assert "providers" not in completions(ip, "%imagine prov")
