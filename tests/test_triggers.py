"""sandbox/_triggers.py: the prompt words that make a sandbox job fail or hang."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from jupyter_imagine.sandbox._triggers import FAIL_WORD, HANG_WORD, PromptTriggers


@dataclass
class Record(PromptTriggers):
    prompt: str


@pytest.mark.parametrize(("prompt", "fail", "hang"), [
    ("a lighthouse", False, False),
    (f"a lighthouse {FAIL_WORD}", True, False),
    ("A LIGHTHOUSE SANDBOX:HANG", False, True),  # case-insensitive
    (f"{FAIL_WORD} and {HANG_WORD}", True, True),
    ("sandbox fail", False, False),  # the colon is part of the word
])
def test_the_words_are_found_in_any_case(prompt, fail, hang):
    record = Record(prompt)
    assert (record.fail, record.hang) == (fail, hang)
