"""Tests of the helpers every provider shares (``jupyter_imagine.providers._base``); the
contract itself is exercised by each provider's own tests against the sandbox."""

from __future__ import annotations

import pytest

from jupyter_imagine.errors import InvalidRequest
from jupyter_imagine.providers._base import new_prompt


def test_new_prompt_pops_it_and_refuses_an_empty_one_or_one_that_is_no_text():
    kwargs = {"prompt": "a lighthouse at dawn", "seed": 1}
    assert new_prompt(kwargs) == "a lighthouse at dawn" and kwargs == {"seed": 1}
    assert new_prompt({}) is None and new_prompt({"prompt": None}) is None
    for empty in ("", "   "):
        with pytest.raises(InvalidRequest, match="^the new prompt is empty; give it some text"):
            new_prompt({"prompt": empty})
    with pytest.raises(InvalidRequest, match="^the new prompt must be text, not int$"):
        new_prompt({"prompt": 42})
