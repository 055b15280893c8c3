"""One warning per outage for a step that repeats: the engine's heartbeat, its follower and
its polls of a job, the team store's live updates.

Each try of such a step may fail the same way for minutes (the team store's server is down,
the disk is full, the provider answers 503). :class:`Outage` says the first failure as a
warning and the repeats at DEBUG, then the first success after them as a warning that it works
again, so an outage is two lines in the notebook instead of one per try into whatever cell ran
last.
"""

from __future__ import annotations

import logging

__all__ = ["Outage"]


class Outage:
    """The failures of one repeated step, logged once per outage.

    Args:
        logger: where to log.
        what: the step, as the lines start (``"heartbeat of vm:123:ab12cd34"``).

    Attributes:
        failing: whether the last try failed (default ``False``).
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._logger, self.what, self.failing = logger, what, False

    def failed(self, error: object, then: str) -> None:
        """A try failed with ``error``; ``then`` says what happens next (``"trying again
        every 10 s"``). A warning if the try before worked, else DEBUG."""
        level = logging.DEBUG if self.failing else logging.WARNING
        self._logger.log(level, "%s: %s; %s", self.what, error, then)
        self.failing = True

    def worked(self, news: str) -> None:
        """A try worked; if the one before failed, ``news`` is logged as a warning (``"the
        history answers again"``)."""
        if self.failing:
            self._logger.warning("%s: %s", self.what, news)
        self.failing = False
