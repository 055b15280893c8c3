"""The notebook widgets (anywidget; their ESM and CSS live in the repository's ``js/``).

- :class:`JobView` — the live view of a job: status, progress, result images, one button per
  action; the views of the jobs its buttons start appear beneath it. Displaying a
  :class:`~jupyter_imagine.Job` shows one, next to a static PNG that a saved notebook keeps.
- :class:`MaskDrawer` — paint the region for Vary (Region) (or any masked edit) and submit it.
- :class:`Gallery` / :func:`gallery` — a filterable grid over past jobs.

Imported on first display, not by ``import jupyter_imagine``.
"""

from __future__ import annotations

from ._gallery import Gallery, gallery
from ._job_view import JobView
from ._mask_drawer import MaskDrawer

__all__ = ["Gallery", "JobView", "MaskDrawer", "gallery"]
