"""The magics: ``%imagine`` and ``%%reroll`` through a real ``InteractiveShell``."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import ClassVar

import httpx
import pandas as pd
import pytest
from IPython.core.error import UsageError
from traitlets import TraitError

import jupyter_imagine as ji
from jupyter_imagine import magics as magics_module
from jupyter_imagine.magics import ImagineMagics, MagicHelp
from jupyter_imagine.models import REROLL, Job, Status
from jupyter_imagine.providers import PROVIDERS, ParamSpec
from jupyter_imagine.providers.apiframe import Apiframe

# ====================================================================== fixtures
PARAMS = {
    "aspect_ratio": ParamSpec("aspect_ratio"),
    "process_mode": ParamSpec("process_mode", choices=("fast", "turbo")),
}


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
        ip.config.pop("ImagineMagics", None)  # %config also writes the shell's own config
        for name in ("job", "child", "subject", "style", "HOME", "red", "green", "jid", "out",
                     "jupyter_imagine", "ji", "caught"):
            ip.user_ns.pop(name, None)


@pytest.fixture
def magics(shell) -> ImagineMagics:
    return shell.magics_manager.registry["ImagineMagics"]


@pytest.fixture
def wire(monkeypatch):
    """Every JSON body the provider clients send to the in-process sandbox, as (path, body)."""
    sent: list[tuple[str, dict]] = []
    original = httpx.ASGITransport.handle_async_request

    async def spy(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.content:
            sent.append((request.url.path, json.loads(request.content)))
        return await original(self, request)

    monkeypatch.setattr(httpx.ASGITransport, "handle_async_request", spy)
    return sent


def rows(engine) -> int:
    return len(engine.store.records())


def sent_to(wire, suffix: str) -> list[dict]:
    return [body for path, body in wire if path.endswith(suffix)]


def one_line_usage_error(call, *expected: str, error: type[Exception] = UsageError) -> str:
    """Run ``call``; it must raise a one-line ``error`` (default UsageError) of exactly that type
    containing every ``expected`` text."""
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error, type(info.value)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    for text in expected:
        assert text in message, message
    return message


# ====================================================================== %imagine
def test_assignment_returns_the_job_at_once_then_it_finishes(
    shell, magics, engine, sandbox, monkeypatch
):
    waited: list[Job] = []
    monkeypatch.setattr(Job, "wait", lambda self, timeout=None: waited.append(self) or self)
    sandbox.clock.speed = 0  # frozen: the job cannot finish until the clock runs again
    result = shell.run_cell("job = %imagine a lighthouse at dusk")
    assert result.success, result.error_in_exec
    job = shell.user_ns["job"]
    assert isinstance(job, Job)
    assert not waited  # the magic returned without waiting …
    assert job.status in (Status.QUEUED, Status.RUNNING)
    assert engine.store.get(job.id)["status"] in ("queued", "running")
    assert job.provider == "apiframe" and job.kind == "imagine" and job.sandbox
    assert job.prompt == "a lighthouse at dusk"
    assert magics.last_job is job
    monkeypatch.undo()
    sandbox.clock.speed = 1000
    job.wait(60)  # … and the job finishes on its own
    assert job.status is Status.SUCCEEDED and len(job.images) == 4


def test_a_hanging_job_is_returned_unfinished(shell, engine, monkeypatch):
    monkeypatch.setattr(Job, "wait", lambda self, timeout=None: pytest.fail("waited"))
    job = shell.run_line_magic("imagine", "a lighthouse at dusk sandbox:hang")
    assert isinstance(job, Job) and job.status in (Status.QUEUED, Status.RUNNING)
    assert engine.store.get(job.id)["status"] in ("queued", "running")
    job.cancel()


def test_bare_magic_displays_the_job(shell, capsys):
    result = shell.run_cell("%imagine a lighthouse at dusk")
    assert result.success
    assert isinstance(result.result, Job)
    result.result.wait(60)


# With red, green and HOME defined, IPython's $var / {expr} expansion would change this prompt.
PROMPT = "a {red, green} \"quoted\" fox::2  cat::-0.5 $HOME 'single' --ar 16:9 --chaos 5 --no trees"
# Nested permutations and braces that IPython's formatter cannot parse.
ODD_PROMPT = "{{red, green}, blue} {{ {a,b}, c} }} $ {{ 1+1 }} \\ tab\there"


def test_prompt_reaches_the_provider_untouched(shell, engine, sandbox, wire):
    shell.user_ns.update(HOME="/expanded", red="RED", green="GREEN")  # would show if expanded
    result = shell.run_cell(f"job = %imagine {PROMPT}")
    assert result.success, result.error_in_exec
    job = shell.user_ns["job"].wait(60)
    assert job.prompt == PROMPT
    assert sent_to(wire, "/apiframe/imagine") == [{"prompt": PROMPT}]
    assert engine.store.get(job.id)["prompt"] == PROMPT
    assert sandbox.tasks[job.remote_id].prompt == PROMPT  # what the sandbox recorded


def test_prompt_untouched_through_run_line_magic_too(shell, wire):
    shell.user_ns.update(HOME="/expanded", red="RED", green="GREEN")
    job = shell.run_line_magic("imagine", f"--process_mode turbo {PROMPT}").wait(60)
    assert job.prompt == PROMPT and job.params == {"process_mode": "turbo"}
    odd = shell.run_line_magic("imagine", f"-- {ODD_PROMPT}").wait(60)
    assert odd.prompt == ODD_PROMPT
    assert sent_to(wire, "/apiframe/imagine") == [
        {"prompt": PROMPT, "process_mode": "turbo"}, {"prompt": ODD_PROMPT}
    ]


def test_options_and_provider_parameters_reach_the_job(shell, wire):
    job = shell.run_line_magic("imagine", "-p apiframe --aspect_ratio 3:2 -- a cat").wait(60)
    assert job.provider == "apiframe" and job.prompt == "a cat"
    assert job.params["aspect_ratio"] == "3:2"
    assert sent_to(wire, "/apiframe/imagine") == [{"prompt": "a cat", "aspect_ratio": "3:2"}]


def test_double_dash_lets_a_prompt_start_with_a_dash_or_a_subcommand(shell):
    job = shell.run_line_magic("imagine", "--aspect-ratio=16:9 -- -a cat --ar 2:3")
    assert job.prompt == "-a cat --ar 2:3" and job.params == {"aspect_ratio": "16:9"}
    job2 = shell.run_line_magic("imagine", "-- history of the lighthouse")
    assert job2.prompt == "history of the lighthouse" and job2.kind == "imagine"
    for j in (job, job2):
        j.wait(60)


def test_variable_interpolation(shell):
    shell.user_ns["subject"] = "lighthouse"
    shell.user_ns["style"] = SimpleNamespace(painter=SimpleNamespace(name="Turner"), year=1840)
    result = shell.run_cell(
        "job = %imagine a {{subject}} by {{ style.painter.name }} ({{style.year}}), {red, green}"
    )
    assert result.success, result.error_in_exec
    job = shell.user_ns["job"]
    assert job.prompt == "a lighthouse by Turner (1840), {red, green}"
    job.wait(60)


def test_unknown_variable_is_one_line_and_starts_nothing(shell, engine):
    before = rows(engine)
    message = one_line_usage_error(
        lambda: shell.run_line_magic("imagine", "a {{foo}} at dusk"),
    )
    assert message == "unknown variable 'foo' in {{foo}}"
    shell.user_ns["style"] = SimpleNamespace(name="Turner")
    one_line_usage_error(
        lambda: shell.run_line_magic("imagine", "a cat by {{style.nope}}"),
        "style has no attribute 'nope'",
        "{{style.nope}}",
    )
    assert rows(engine) == before


def test_wait_returns_a_finished_job(shell, engine):
    job = shell.run_line_magic("imagine", "--wait a lighthouse at dusk")
    assert job.status is Status.SUCCEEDED and len(job.images) == 4
    job2 = shell.run_line_magic("imagine", "-w -t 20 a harbour")
    assert job2.status is Status.SUCCEEDED and job2.timeout == 20


def test_wait_on_a_failing_job_raises_job_failed_in_one_line(shell, capsys):
    message = one_line_usage_error(
        lambda: shell.run_line_magic("imagine", "-w a city sandbox:fail"), "failed",
        error=ji.JobFailed,
    )
    result = shell.run_cell("job = %imagine -w a city sandbox:fail")
    assert isinstance(result.error_in_exec, ji.JobFailed)
    assert result.error_in_exec.job.status is Status.FAILED
    shown = capsys.readouterr()
    lines = [line for line in (shown.out + shown.err).splitlines() if line.strip()]
    assert len(lines) == 1 and "JobFailed" in lines[0], lines
    assert message.partition(" failed: ")[2] in lines[0]
    assert "Traceback" not in shown.out + shown.err


class _CtrlCFuture:
    """A job's future whose ``result()`` meets a Ctrl-C; the engine still resolves it."""

    def __init__(self, real):
        self.real = real

    def done(self):
        return self.real.done()

    def set_result(self, value):
        self.real.set_result(value)

    def result(self, timeout=None):
        raise KeyboardInterrupt


@pytest.fixture
def ctrl_c(monkeypatch):
    """Every ``Job.wait()`` is interrupted as by Ctrl-C while it blocks."""
    original = Job.wait

    def wait(self, timeout=None):
        if not isinstance(self._done, _CtrlCFuture):
            self._done = _CtrlCFuture(self._done)
        return original(self, timeout)

    monkeypatch.setattr(Job, "wait", wait)


@pytest.fixture
def terminal(monkeypatch):
    """stderr taken for an interactive terminal (as in terminal IPython)."""
    from jupyter_imagine import _display

    monkeypatch.setattr(_display, "stderr_is_terminal", lambda: True)


def test_wait_shows_one_progress_line_then_the_job_once(shell, terminal, capfd):
    result = shell.run_cell("%imagine --wait a lighthouse at dusk")
    assert result.success, result.error_in_exec
    job = result.result
    assert isinstance(job, Job) and job.status is Status.SUCCEEDED
    shown = capfd.readouterr()
    progress = [line for line in shown.err.split("\n") if line.strip()]
    assert len(progress) == 1, progress  # one line, redrawn in place with \r
    last = progress[0].split("\r")[-1]
    assert last.startswith(f"apiframe imagine {job.id[:8]}: 100%") and "succeeded" in last
    assert shown.out.count(job.id[:8]) == 1  # the cell's result shows the job once


def test_ctrl_c_during_wait_prints_one_line_and_the_job_keeps_running(shell, engine, ctrl_c,
                                                                       capfd):
    result = shell.run_cell("job = %imagine --wait a lighthouse at dusk sandbox:hang")
    exc = result.error_in_exec
    assert isinstance(exc, KeyboardInterrupt) and not result.success  # "Run All" stops here
    job = exc.job
    shown = capfd.readouterr()
    lines = [line for line in (shown.out + shown.err).splitlines() if line.strip()]
    assert lines == [
        f"stopped waiting; job {job.id[:8]} keeps running — ji.job('{job.id[:8]}') to follow it"
    ]
    assert not job.status.final and engine.store.get(job.id)["status"] in ("queued", "running")
    assert ji.job(job.id[:8]) is job  # the line's advice works
    job.cancel()


def test_ctrl_c_in_the_users_own_wait_is_one_line_too(shell, ctrl_c, capfd):
    shell.user_ns["ji"] = ji
    result = shell.run_cell("job = ji.imagine('a harbour sandbox:hang')\njob.wait()\n")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    shown = capfd.readouterr()
    lines = [line for line in (shown.out + shown.err).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("stopped waiting; job "), lines
    shell.user_ns["job"].cancel()


def test_code_can_catch_the_error_type_of_a_magic(shell):
    result = shell.run_cell(
        "import jupyter_imagine as ji\n"
        "try:\n"
        "    %imagine -w a city sandbox:fail\n"
        "except ji.JobFailed as exc:\n"
        "    caught = exc\n"
    )
    assert result.success, result.error_in_exec
    assert isinstance(shell.user_ns.pop("caught"), ji.JobFailed)
    shell.user_ns.pop("ji", None)


# ====================================================================== %%reroll
def test_reroll_with_an_explicit_id(shell, wire):
    parent = shell.run_line_magic("imagine", "--wait -- a lighthouse at dusk")
    child = shell.run_cell_magic("reroll", parent.id[:8], "  a lighthouse at dawn, {fog, rain}\n")
    assert isinstance(child, Job)
    assert child.kind == "reroll" and child.parent_id == parent.id and child.action == REROLL
    assert child.prompt == "a lighthouse at dawn, {fog, rain}"
    child.wait(60)
    assert sent_to(wire, "/apiframe/reroll")[0]["prompt"] == "a lighthouse at dawn, {fog, rain}"


def test_reroll_without_an_id_takes_the_last_magic_job(shell, magics):
    parent = shell.run_line_magic("imagine", "-w a lighthouse at dusk")
    newer = ji.imagine("a newer job, not started by the magics").wait(60)
    shell.user_ns["subject"] = "harbour"
    result = shell.run_cell("%%reroll --wait\na {{subject}} at dawn\n")
    assert result.success, result.error_in_exec
    child = result.result
    assert child.status is Status.SUCCEEDED
    assert child.kind == "reroll" and child.parent_id == parent.id != newer.id
    assert child.prompt == "a harbour at dawn"
    assert magics.last_job is child


def test_reroll_without_an_id_or_magic_job_takes_the_newest_in_the_history(shell, magics):
    magics.last_job = None
    older = ji.imagine("an older job").wait(60)
    newest = ji.imagine("the newest job").wait(60)
    child = shell.run_cell_magic("reroll", "", "a new prompt")
    assert child.parent_id == newest.id != older.id and child.prompt == "a new prompt"
    child.wait(60)


def test_reroll_of_a_job_without_the_button_reruns_it_as_a_new_linked_job(shell, engine):
    """Where there is no 🔄 (an upscale, a running job, Banatie's generations), %%reroll starts
    a new job of the same provider with the cell's prompt and the job's parameters, linked to
    it, as df.imagine.reroll does."""
    parent = shell.run_line_magic("imagine", "-w --aspect_ratio 3:2 a lighthouse")
    upscale = parent.upscale(1).wait(60)
    assert REROLL not in upscale.actions
    again = shell.run_cell_magic("reroll", f"{upscale.id} --wait", "a lighthouse in fog")
    assert (again.kind, again.action, again.parent_id) == ("imagine", None, upscale.id)
    assert again.prompt == "a lighthouse in fog" and again.status is Status.SUCCEEDED
    generation = ji.imagine("a paper boat", provider="banatie", aspect_ratio="16:9").wait(60)
    boat = shell.run_cell_magic("reroll", f"{generation.id} --wait", "a paper plane")
    assert (boat.provider, boat.kind, boat.parent_id) == ("banatie", "generation", generation.id)
    assert boat.params["aspect_ratio"] == "16:9" and len(boat.images) == 1
    assert boat.remote_id != generation.remote_id  # a new generation, the parent's untouched


def test_reroll_of_a_running_job_starts_a_new_one_beside_it(shell, engine):
    running = shell.run_line_magic("imagine", "a lighthouse sandbox:hang")
    again = shell.run_cell_magic("reroll", "", "a lighthouse, again")
    assert again.parent_id == running.id and again.kind == "imagine"
    assert not running.status.final  # left to run
    for job in (running, again):
        job.cancel()


def test_reroll_errors_are_one_line_and_start_nothing(shell, engine):
    parent = shell.run_line_magic("imagine", "-w a lighthouse")
    before = rows(engine)
    one_line_usage_error(
        lambda: shell.run_cell_magic("reroll", "nosuchjob", "a new prompt"), "nosuchjob",
        error=ji.NotFound,
    )
    one_line_usage_error(
        lambda: shell.run_cell_magic("reroll", parent.id, "  \n\t\n"), "empty"
    )
    one_line_usage_error(
        lambda: shell.run_cell_magic("reroll", parent.id, "a {{nope}}"),
        "unknown variable 'nope'",
    )
    one_line_usage_error(lambda: shell.run_cell_magic("reroll", "--bogus", "x"), "--bogus")
    assert rows(engine) == before


def test_reroll_with_an_empty_history_is_one_line(shell, magics, engine):
    magics.last_job = None
    assert rows(engine) == 0
    one_line_usage_error(lambda: shell.run_cell_magic("reroll", "", "a prompt"), "no job")


# ====================================================================== errors
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", ("prompt is empty",)),
        ("-p nope a cat", (ji.ConfigurationError, "unknown provider 'nope'", "apiframe")),
        ("-w -p apiframe", ("prompt is empty",)),
        ("--   ", ("prompt is empty",)),
        ("--nope 1 a cat", ("unknown option --nope", "--provider", "--aspect_ratio")),
        ("--ar 16:9 a cat", ("unknown option --ar", "in the prompt")),
        ("-x a cat", ("unknown option -x",)),
        ("--aspect_ratio", ("--aspect_ratio needs a value",)),
        ("-t soon a cat", ("--timeout", "soon")),
        ("-t 0 a cat", ("positive",)),
        ("--wait=yes a cat", ("--wait takes no value",)),
        ("--aspect_ratio 16by9 a cat", (ji.InvalidRequest, "aspect_ratio", "16by9")),
        ("--process_mode slow a cat", (ji.InvalidRequest, "process_mode", "slow")),
        ("history of rome", ("history takes one number", "%imagine -- history")),
        ("job", ("job takes one job id",)),
        ("job nosuchjob", (ji.NotFound, "nosuchjob", "%imagine -- job")),
        ("help nope", (ji.ConfigurationError, "unknown provider 'nope'")),
        ("help apiframe banatie", ("help takes one provider name",)),
        ("providers please", ("providers takes no arguments",)),
        ("--aspect_ratio '3:2 a cat", ("unclosed",)),
    ],
)
def test_user_errors_are_one_line_and_start_nothing(shell, engine, line, expected):
    """Usage mistakes are UsageErrors; an ImagineError keeps its own type (first item)."""
    error, texts = (expected[0], expected[1:]) if isinstance(expected[0], type) else (
        UsageError, expected
    )
    before = rows(engine)
    one_line_usage_error(lambda: shell.run_line_magic("imagine", line), *texts, error=error)
    assert rows(engine) == before


def test_run_cell_shows_a_usage_error_without_traceback(shell, capsys):
    result = shell.run_cell("%imagine --nope 1 a cat")
    assert isinstance(result.error_in_exec, UsageError)
    err = capsys.readouterr().err
    assert "UsageError: unknown option --nope" in err
    assert "Traceback" not in err


def test_run_cell_shows_an_imagine_error_as_one_line_of_its_own_type(shell, capsys):
    result = shell.run_cell("%imagine -p nope a cat")
    assert type(result.error_in_exec) is ji.ConfigurationError
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert [line for line in text.splitlines() if line.strip()] == [
        next(line for line in text.splitlines() if "ConfigurationError" in line)
    ]
    assert "unknown provider 'nope'" in text and "Traceback" not in text


def test_a_default_provider_from_the_environment_is_checked_by_name(shell, capsys,
                                                                     monkeypatch):
    monkeypatch.setenv("JUPYTER_IMAGINE_PROVIDER", "Midjourney")
    result = shell.run_cell("%imagine a cat")
    assert type(result.error_in_exec) is ji.ConfigurationError
    shown = capsys.readouterr()
    assert "Traceback" not in shown.out + shown.err
    assert str(result.error_in_exec) == (
        "JUPYTER_IMAGINE_PROVIDER is 'Midjourney', which is no provider; set it to one of: "
        f"{', '.join(PROVIDERS)}, or unset it for apiframe"
    )
    monkeypatch.setenv("JUPYTER_IMAGINE_PROVIDER", " BANATIE ")
    assert ji.imagine("a cat").wait(60).provider == "banatie"


def test_an_imagine_error_from_plain_python_keeps_its_traceback(shell, capsys):
    result = shell.run_cell("import jupyter_imagine\njupyter_imagine.job('nosuchjob')")
    assert isinstance(result.error_in_exec, ji.NotFound)
    shown = capsys.readouterr()
    assert "NotFound" in shown.out + shown.err
    assert len((shown.out + shown.err).strip().splitlines()) > 1  # the usual traceback


def test_unexpected_exceptions_are_not_swallowed(shell, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(magics_module.api, "imagine", boom)
    with pytest.raises(RuntimeError, match="a bug"):
        shell.run_line_magic("imagine", "a cat")


# ====================================================================== subcommands
def test_providers_subcommand(shell, monkeypatch):
    report = shell.run_line_magic("imagine", "providers")
    text = repr(report)
    assert "apiframe" in text and "APIFRAME_API_KEY" in text
    assert "❌ no key" in text and "sandbox" in text and "✅" not in text  # words, not only marks
    assert len(text.splitlines()) == len(PROVIDERS)
    assert "| ❌ no key | **apiframe** |" in report._repr_markdown_()

    monkeypatch.setenv("APIFRAME_API_KEY", "k" * 32)
    text = repr(shell.run_line_magic("imagine", "providers"))
    line = next(line for line in text.splitlines() if "apiframe" in line)
    assert line.startswith("✅ key set") and "https://api.apiframe.pro" in line
    assert "k" * 32 not in text


def test_history_subcommand(shell):
    jobs = [shell.run_line_magic("imagine", f"-w a lighthouse number {i}") for i in range(6)]
    gallery = shell.run_line_magic("imagine", "history 5")  # the gallery widget over the rows
    assert type(gallery).__name__ == "Gallery" and len(gallery) == 5
    assert list(gallery.frame["id"]) == [j.id for j in reversed(jobs[1:])]
    assert len(shell.run_line_magic("imagine", "history")) == 6


def test_job_subcommand(shell):
    job = shell.run_line_magic("imagine", "-w a lighthouse")
    assert shell.run_line_magic("imagine", f"job {job.id[:8]}") is job
    shell.user_ns["jid"] = job.id
    result = shell.run_cell("out = %imagine job {{jid}}")
    assert result.success and shell.user_ns["out"] is job


def test_help_documents_options_subcommands_and_examples(shell):
    doc = shell.find_line_magic("imagine").__doc__
    for text in (
        "--provider", "--wait", "--timeout", " -- ", "{{", "--aspect_ratio", "--process_mode",
        "providers", "history", "job ID", "%imagine -- history",
    ):
        assert text in doc, text
    reroll_doc = shell.find_cell_magic("reroll").__doc__
    assert "JOB_ID" in reroll_doc and "--wait" in reroll_doc and "%%reroll" in reroll_doc


@pytest.mark.parametrize("line", ["-h", "--help", "help", "-w -h"])
def test_help_flags_and_subcommand_show_the_real_help(shell, engine, line):
    before = rows(engine)
    shown = shell.run_line_magic("imagine", line)
    assert isinstance(shown, MagicHelp)
    text = repr(shown)
    assert text.startswith("%imagine [-p NAME]")
    for name in PROVIDERS:
        assert f"{name} parameters:" in text
    assert rows(engine) == before  # nothing started


def test_help_narrowed_to_a_provider(shell):
    for line in ("help blockade", "-p blockade -h", "-p blockade --help a cat"):
        text = repr(shell.run_line_magic("imagine", line))
        assert "blockade parameters:" in text and "banatie parameters" not in text, line


def test_help_is_markdown_in_a_notebook_and_plain_text_in_a_terminal(shell):
    data, _ = shell.display_formatter.format(shell.run_line_magic("imagine", "-h"))
    assert data["text/plain"].startswith("%imagine [-p NAME]")
    assert "```" not in data["text/plain"] and "| option |" not in data["text/plain"]
    assert "| option | what it does |" in data["text/markdown"]


def test_question_mark_shows_the_generated_help(shell, capsys):
    result = shell.run_cell("%imagine?")
    assert result.success, result.error_in_exec
    out = capsys.readouterr().out
    assert "%imagine [-p NAME] [-w] [-t SECONDS]" in out and "apiframe parameters:" in out
    result = shell.run_cell("%%reroll?")
    assert result.success
    assert "%%reroll [-w] [-t SECONDS] [JOB_ID]" in capsys.readouterr().out


def test_reroll_help(shell, engine):
    before = rows(engine)
    for line in ("-h", "--help", "-w --help"):
        result = shell.run_cell(f"%%reroll {line}\n")  # alone in its cell: no body
        assert result.success, result.error_in_exec
        assert isinstance(result.result, MagicHelp)
        assert repr(result.result).startswith("%%reroll [-w]")
    assert isinstance(shell.run_cell_magic("reroll", "-h", "a body"), MagicHelp)
    assert rows(engine) == before
    result = shell.run_cell("%%reroll\n")  # without -h, an empty body stays IPython's error
    assert isinstance(result.error_in_exec, UsageError)


# ====================================================================== configuration
class Otherframe(Apiframe):
    """An APIFRAME look-alike under another name (same sandbox), with its own parameter."""

    name = "otherframe"
    params: ClassVar[dict[str, ParamSpec]] = {
        **Apiframe.params, "style": ParamSpec("style", help="a made-up parameter")
    }


def test_config_traits_are_registered_settable_and_honoured(
    shell, magics, monkeypatch, capsys, caplog
):
    monkeypatch.setitem(PROVIDERS, "otherframe", Otherframe)
    assert [c for c in shell.configurables if isinstance(c, ImagineMagics)] == [magics]
    assert magics.default_provider == "" and magics.wait is False and magics.timeout is None
    for trait in ("default_provider", "wait", "timeout"):
        assert magics.traits()[trait].help

    # without the setting, --style is not an apiframe parameter
    one_line_usage_error(lambda: shell.run_line_magic("imagine", "--style x a cat"), "--style")

    shell.run_line_magic("config", 'ImagineMagics.default_provider = "otherframe"')
    assert magics.default_provider == "otherframe"
    job = shell.run_line_magic("imagine", "--style oil a cat")
    assert job.provider == "otherframe" and job.params == {"style": "oil"}
    assert shell.run_line_magic("imagine", "-p apiframe a dog").provider == "apiframe"

    shell.run_line_magic("config", 'ImagineMagics.default_provider = " OtherFrame "')
    assert magics.default_provider == "otherframe"  # stripped and lower-cased

    shell.run_line_magic("config", 'ImagineMagics.default_provider = "midjourney"')
    assert "apiframe, thenextleg, neuroflash, banatie, blockade" in caplog.text  # refused …
    assert "'midjourney'" in caplog.text
    assert magics.default_provider == "otherframe"  # … and the setting is unchanged
    assert shell.run_line_magic("imagine", "a cat").provider == "otherframe"

    shell.run_line_magic("config", "ImagineMagics.wait = True")
    shell.run_line_magic("config", "ImagineMagics.timeout = 30.0")
    finished = shell.run_line_magic("imagine", "a finished cat")
    assert finished.status is Status.SUCCEEDED and finished.timeout == 30
    job.wait(60)


@pytest.mark.parametrize(
    ("trait", "value", "expected"),
    [
        ("default_provider", "midjourney", ("apiframe", "thenextleg", "blockade", "neuroflash",
                                            "banatie", "'midjourney'")),
        ("timeout", 0.0, ("positive number of seconds", "None")),
        ("timeout", -5.0, ("positive",)),
        ("timeout", float("inf"), ("positive",)),
        ("wait", "yes", ("wait",)),
    ],
)
def test_invalid_config_values_are_refused_at_assignment(magics, trait, value, expected):
    before = getattr(magics, trait)
    with pytest.raises(TraitError) as info:
        setattr(magics, trait, value)
    for text in expected:
        assert text in str(info.value), str(info.value)
    assert getattr(magics, trait) == before
    magics.timeout = 12.5  # valid values still go through
    magics.default_provider = "Banatie"
    assert magics.timeout == 12.5 and magics.default_provider == "banatie"


def test_a_refused_config_value_does_not_break_reload_ext(shell, caplog):
    shell.run_line_magic("config", 'ImagineMagics.default_provider = "midjourney"')
    shell.run_line_magic("reload_ext", "jupyter_imagine")
    magics = shell.magics_manager.registry["ImagineMagics"]
    assert magics.default_provider == ""
    assert "ignoring ImagineMagics.default_provider" in caplog.text


def test_unload_removes_the_configurable(engine):
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_imagine")
    ip.run_line_magic("reload_ext", "jupyter_imagine")
    assert sum(isinstance(c, ImagineMagics) for c in ip.configurables) == 1
    ip.run_line_magic("unload_ext", "jupyter_imagine")
    assert not any(isinstance(c, ImagineMagics) for c in ip.configurables)


def test_load_ext_starts_the_engine_and_resumes_unfinished_jobs(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    from jupyter_imagine import api
    from jupyter_imagine.engine import Engine
    from jupyter_imagine.store import Store

    fast = {"sandbox_speed": 1000.0, "backoff_base": 0.01, "backoff_cap": 0.2}
    store = Store(tmp_path / "home")
    pending = Job(provider="apiframe", kind="imagine", prompt="left over", sandbox=True)
    store.save(pending.to_record())
    monkeypatch.setattr(api, "_engine", None)
    monkeypatch.setattr(api, "Engine", lambda store_: Engine(store, **fast))
    ip = InteractiveShell.instance()
    try:
        ip.run_line_magic("load_ext", "jupyter_imagine")
        engine = api._engine
        assert engine is not None and engine.running
        resumed = engine.get(pending.id).wait(60)
        assert resumed.status is Status.SUCCEEDED
    finally:
        ip.run_line_magic("unload_ext", "jupyter_imagine")
        if api._engine is not None:
            api._engine.close()


@pytest.mark.parametrize("damage", ["file", "corrupt", "truncated"])
def test_an_unusable_home_is_one_line_from_load_ext_history_and_imagine(
    tmp_path, monkeypatch, capsys, caplog, damage
):
    from IPython.core.interactiveshell import InteractiveShell

    from jupyter_imagine import api

    home = tmp_path / "home"
    if damage == "file":
        home.write_text("not a folder")
    else:
        home.mkdir()
        db = b"SQLite format 3\x00" + bytes(84) if damage == "truncated" else b"garbage " * 99
        (home / "history.sqlite").write_bytes(db)
    monkeypatch.setenv("JUPYTER_IMAGINE_HOME", str(home))
    monkeypatch.setattr(api, "_engine", None)
    ip = InteractiveShell.instance()
    try:
        ip.run_line_magic("load_ext", "jupyter_imagine")  # the magics still load
        warned = [r.getMessage() for r in caplog.records if "did not start" in r.getMessage()]
        assert len(warned) == 1 and "StorageError" not in warned[0]
        assert f"the history at {home}" in warned[0] and "\n" not in warned[0]
        capsys.readouterr()
        for cell in ("import jupyter_imagine as ji; ji.history()", "%imagine a harbour",
                     "ji.job('abcdef12')", "ji.imagine('a quay')"):
            result = ip.run_cell(cell)
            out = capsys.readouterr()
            shown = re.sub(r"\x1b\[[0-9;]*m", "", out.out + out.err).strip()  # no colours
            assert isinstance(result.error_in_exec, ji.StorageError), cell
            assert "Traceback" not in shown and len(shown.splitlines()) == 1, shown
            assert shown.startswith("StorageError: the history at"), shown
    finally:
        ip.run_line_magic("unload_ext", "jupyter_imagine")
        ip.user_ns.pop("ji", None)


def test_budget_and_prices_config_apply_to_the_session(shell, magics, caplog):
    from jupyter_imagine import _config

    try:
        shell.run_line_magic("config", 'ImagineMagics.budget = {"apiframe": (4, "week")}')
        assert _config.budget_rules()["apiframe"].period == "week"
        shell.run_line_magic("config", 'ImagineMagics.prices = {"apiframe": {"imagine": 3}}')
        assert _config.price_overrides() == {"apiframe": {"imagine": 3.0}}
        job = shell.run_line_magic("imagine", "--wait a cat")
        assert job.status is Status.SUCCEEDED
        refused = shell.run_line_magic("imagine", "a second cat")
        refused.future.result(30)
        assert refused.error_type == "BudgetExceeded" and "needs 3 credits" in refused.error
        shell.run_line_magic("config", 'ImagineMagics.budget = {"apiframe": -1}')
        assert "ImagineMagics.budget" in caplog.text and "finite amount" in caplog.text
        assert _config.budget_rules()["apiframe"].amount == 4  # refused: unchanged
        with pytest.raises(TraitError, match="unknown provider|midjourney"):
            magics.budget = {"midjourney": 1}
        shell.run_line_magic("config", "ImagineMagics.budget = {}")
        assert _config.budget_rules() == {}
    finally:
        ji.configure(budget=None, prices=None)


def test_imagine_balance_shows_what_each_provider_reports(shell):
    report = shell.run_line_magic("imagine", "balance apiframe")
    row = report.frame.iloc[0]
    assert (row["provider"], row["unit"], row["left"]) == ("apiframe", "credits", 10000.0)
    assert row["read_at"] is not None and pd.isna(row["error"])
    assert "balances" in repr(report) and "<table" in report._repr_html_()
    every = shell.run_line_magic("imagine", "balance")
    assert set(every.frame["provider"]) == set(PROVIDERS)


def test_store_config_moves_the_session_to_another_history(shell, magics, tmp_path, pg_url,
                                                           caplog):
    from jupyter_imagine import api

    before = api.get_engine()
    try:
        shell.run_line_magic("config", f"ImagineMagics.store = {pg_url!r}")
        team = api.get_engine()
        assert team is not before and type(team.store).__name__ == "PostgresStore"
        job = shell.run_line_magic("imagine", "--wait a cat on the team store")
        assert job.status is Status.SUCCEEDED
        assert ("apiframe", job.id) in ji.history().index
        shell.run_line_magic("config", 'ImagineMagics.store = "postgresql://ann:pw@127.0.0.1:9/x"')
        assert "ImagineMagics.store" in caplog.text and "cannot be reached" in caplog.text
        assert "pw" not in caplog.text.split("ImagineMagics.store", 1)[1].split("\n")[0]
        assert api.get_engine() is team  # refused: the session keeps its store
        shell.run_line_magic("config", 'ImagineMagics.store = "postgresql+psycopg://ann@db/x"')
        assert "drop '+psycopg'" in caplog.text and api.get_engine() is team
        settings = ji.configure(store=str(tmp_path / "elsewhere"))
        assert settings["store"] == str(tmp_path / "elsewhere" / "history.sqlite")
        assert ji.history().empty  # a fresh personal history there
    finally:
        api._set_engine(before).close()
