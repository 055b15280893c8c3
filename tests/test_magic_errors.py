"""One-line, typed errors through the magics (``_magic_errors``), in a real InteractiveShell."""

from __future__ import annotations

import pytest

import jupyter_imagine as ji
from jupyter_imagine import _magic_errors
from jupyter_imagine.models import Job, WaitInterrupted


@pytest.fixture
def ip(engine):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    before = (shell.custom_exceptions, shell.CustomTB)
    yield shell
    if _magic_errors.installed(shell):
        shell.run_line_magic("unload_ext", "jupyter_imagine")
    shell.custom_exceptions, shell.CustomTB = before
    shell.user_ns.pop("jupyter_imagine", None)


def shown(capsys) -> str:
    out = capsys.readouterr()
    return out.out + out.err


def test_load_installs_and_unload_restores_exactly(ip):
    before = (ip.custom_exceptions, ip.CustomTB)
    ip.run_line_magic("load_ext", "jupyter_imagine")
    assert _magic_errors.installed(ip)
    assert ji.ImagineError in ip.custom_exceptions
    _magic_errors.install(ip)  # idempotent
    assert ip.custom_exceptions.count(ji.ImagineError) == 1
    ip.run_line_magic("unload_ext", "jupyter_imagine")
    assert not _magic_errors.installed(ip)
    assert (ip.custom_exceptions, ip.CustomTB) == before


def test_an_earlier_handler_keeps_its_exceptions_and_comes_back(ip, capsys):
    seen: list[BaseException] = []

    def theirs(shell, etype, value, tb, tb_offset=None):
        seen.append(value)
        return ["their handler"]

    ip.set_custom_exc((KeyError,), theirs)
    installed = ip.CustomTB
    ip.run_line_magic("load_ext", "jupyter_imagine")
    assert ip.custom_exceptions == (KeyError, ji.ImagineError, WaitInterrupted)
    ip.run_cell("{}['missing']")
    assert len(seen) == 1 and isinstance(seen[0], KeyError)
    result = ip.run_cell("%imagine -p nope a cat")
    assert isinstance(result.error_in_exec, ji.ConfigurationError) and len(seen) == 1
    assert "ConfigurationError" in shown(capsys)
    ip.run_line_magic("unload_ext", "jupyter_imagine")
    assert ip.custom_exceptions == (KeyError,) and ip.CustomTB is installed


def test_one_line_through_the_magics_traceback_elsewhere(ip, capsys):
    ip.run_line_magic("load_ext", "jupyter_imagine")
    capsys.readouterr()
    result = ip.run_cell("%imagine job nosuchjob")
    assert type(result.error_in_exec) is ji.NotFound
    text = shown(capsys)
    assert len(text.strip().splitlines()) == 1 and "NotFound" in text and "nosuchjob" in text
    result = ip.run_cell("import jupyter_imagine\njupyter_imagine.job('nosuchjob')")
    assert type(result.error_in_exec) is ji.NotFound
    assert len(shown(capsys).strip().splitlines()) > 1  # the user's own code: a traceback


def test_other_exceptions_are_untouched(ip, capsys):
    ip.run_line_magic("load_ext", "jupyter_imagine")
    capsys.readouterr()
    result = ip.run_cell("1/0")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert "ZeroDivisionError" in shown(capsys)


def test_an_interrupted_wait_is_its_one_line_anywhere(ip, capsys):
    ip.run_line_magic("load_ext", "jupyter_imagine")
    capsys.readouterr()
    ip.user_ns["interrupted"] = WaitInterrupted(
        Job(provider="apiframe", kind="imagine", prompt="x", id="3f2a1b2c-0000")
    )
    result = ip.run_cell("raise interrupted")  # the user's own code, not the magics
    assert isinstance(result.error_in_exec, KeyboardInterrupt) and not result.success
    lines = [line for line in shown(capsys).splitlines() if line.strip()]
    assert lines == ["stopped waiting; job 3f2a1b2c keeps running — ji.job('3f2a1b2c') to "
                     "follow it"]
    ip.user_ns.pop("interrupted")
