"""Tests of the parameter rules and helpers every provider shares
(``jupyter_imagine.providers._base``); the contract itself is exercised by each provider's own
tests against the sandbox."""

from __future__ import annotations

import numpy as np
import pytest

from jupyter_imagine.errors import InvalidRequest
from jupyter_imagine.providers._base import ParamSpec, new_prompt


def test_new_prompt_pops_it_and_refuses_an_empty_one_or_one_that_is_no_text():
    kwargs = {"prompt": "a lighthouse at dawn", "seed": 1}
    assert new_prompt(kwargs) == "a lighthouse at dawn" and kwargs == {"seed": 1}
    assert new_prompt({}) is None and new_prompt({"prompt": None}) is None
    for empty in ("", "   "):
        with pytest.raises(InvalidRequest, match="^the new prompt is empty; give it some text"):
            new_prompt({"prompt": empty})
    with pytest.raises(InvalidRequest, match="^the new prompt must be text, not int$"):
        new_prompt({"prompt": 42})


def test_a_parameter_converts_plain_values_and_numpy_scalars_only():
    seed, ratio, ref = (ParamSpec("seed", type=int), ParamSpec("strength", type=float),
                        ParamSpec("ref"))
    assert seed.coerce(np.int64(5), "p") == 5 and seed.coerce("7", "p") == 7  # a batch's cells
    assert ratio.coerce(np.float32(0.5), "p") == 0.5 and ref.coerce(12, "p") == "12"
    refused = [(seed, True, "int", "True"), (seed, 2.5, "int", "2.5"),
               (ref, ["a", "b"], "str", "['a', 'b']"), (ref, {"k": 1}, "str", "{'k': 1}"),
               (ratio, None, "float", "None")]
    for spec, value, kind, shown in refused:
        with pytest.raises(InvalidRequest) as info:
            spec.coerce(value, "p")
        assert str(info.value) == f"p parameter {spec.name!r} must be {kind}, not {shown}"
