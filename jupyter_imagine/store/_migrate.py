"""Copy a personal SQLite history into a team store (``python -m jupyter_imagine.store migrate``).

Rows are upserted by their local id in chunks, so running it twice adds nothing the second
time, and a row already final in the target is never rolled back (the store's usual rule). Who
created each job travels with it; the credentials' fingerprint does not (it is salted per
history, so the target could not read it: migrated jobs count as "credentials unknown"). With
``images=True`` every image file the history points to is copied into the target's image cache
as well and the rows point there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._secrets import get_logger
from ..errors import InvalidRequest
from ._sqlite import DB_NAME, Store

__all__ = ["Migration", "migrate"]

log = get_logger(__name__)

#: Rows per transaction in the target.
CHUNK = 1000


@dataclass
class Migration:
    """What :func:`migrate` did: rows read, rows new in the target, image files copied, and the
    rows it could not copy (``(id, one-line reason)``)."""

    read: int = 0
    added: int = 0
    images: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"copied {self.read - len(self.skipped):,} jobs ({self.added:,} new, "
                f"{self.read - len(self.skipped) - self.added:,} already there)")
        if self.images:
            text += f", {self.images:,} image files"
        if self.skipped:
            text += f"; skipped {len(self.skipped)}: " + "; ".join(
                f"{job_id}: {why}" for job_id, why in self.skipped[:3])
        return text


def migrate(source: str | os.PathLike[str], target: Store, *, images: bool = False,
            chunk: int = CHUNK) -> Migration:
    """Copy every job of the SQLite history in folder ``source`` into ``target``.

    Args:
        source: the ``JUPYTER_IMAGINE_HOME`` folder holding ``history.sqlite``.
        target: the store to copy into (usually a ``PostgresStore``).
        images: also copy the image files (default ``False``: rows keep their paths, which
            are valid on this machine only).
        chunk: rows per transaction, default :data:`CHUNK`.

    Raises:
        InvalidRequest: ``source`` has no history.
        StorageError: either store cannot be used.
    """
    home = Path(source).expanduser()
    if not (home / DB_NAME).is_file():
        raise InvalidRequest(f"there is no history at {home / DB_NAME}; pass the folder "
                             "JUPYTER_IMAGINE_HOME points to with --from")
    report = Migration()
    before = target._query("SELECT count(*) FROM jobs")[0][0]
    with Store(home) as origin:
        for records in _chunks(origin, chunk):
            report.read += len(records)
            if images:
                report.images += sum(_copy_images(rec, target) for rec in records)
            _save(target, records, report)
    report.added = target._query("SELECT count(*) FROM jobs")[0][0] - before
    return report


def _chunks(origin: Store, size: int) -> Iterator[list[dict[str, Any]]]:
    """The source's records in save order, with who created them, ``size`` at a time."""
    last = 0
    while True:
        rows = origin._query(
            "SELECT rowid, record, created_by, created_on FROM jobs WHERE rowid > ? "
            "ORDER BY rowid LIMIT ?", (last, size))
        if not rows:
            return
        last = rows[-1][0]
        out = []
        for _, text, created_by, created_on in rows:
            rec = json.loads(text)
            rec.update(created_by=created_by, created_on=created_on)
            out.append(rec)
        yield out


def _save(target: Store, records: list[dict[str, Any]], report: Migration) -> None:
    """One transaction for the chunk; a chunk with a conflicting row is saved row by row."""
    stamp = target._fingerprints
    target._fingerprints = {}  # the target cannot know these jobs' credentials
    try:
        try:
            target._bulk_save(records)
            return
        except InvalidRequest:
            pass
        for rec in records:
            try:
                target.save(rec)
            except InvalidRequest as exc:
                report.skipped.append((str(rec.get("id")), str(exc)))
                log.warning("not copied: job %s: %s", rec.get("id"), exc)
    finally:
        target._fingerprints = stamp


def _copy_images(rec: dict[str, Any], target: Store) -> int:
    """Copy the record's image files into ``target``'s cache and point the record there."""
    copied = 0
    for image in [*(rec.get("images") or []), *([rec["grid"]] if rec.get("grid") else [])]:
        path = image.get("path") if isinstance(image, dict) else None
        if not path or not Path(path).is_file():
            continue
        ext = Path(path).suffix.lstrip(".") or "bin"
        image["path"] = str(target.put_file(Path(path).read_bytes(), ext=ext))
        copied += 1
    return copied
