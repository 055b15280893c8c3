"""The words a prompt carries to make a sandbox job fail or hang, for the emulators that
honour them (APIFRAME, Banatie, Blockade, neuroflash)."""

from __future__ import annotations

__all__ = ["FAIL_WORD", "HANG_WORD", "PromptTriggers"]

#: A prompt holding this fails (case-insensitive).
FAIL_WORD = "sandbox:fail"
#: A prompt holding this never finishes (case-insensitive).
HANG_WORD = "sandbox:hang"


class PromptTriggers:
    """Mixin for a stored record with a ``prompt``: does it ask to fail, or to hang?"""

    prompt: str

    @property
    def fail(self) -> bool:
        return FAIL_WORD in self.prompt.lower()

    @property
    def hang(self) -> bool:
        return HANG_WORD in self.prompt.lower()
