"""The whole-history frame kept between calls, so the next one reads only what changed.

Reading the whole history into a frame costs about 6 µs per job (0.6 s for 100,000 on the
two-core machine), most of it the Python values the frame is made of (see
:mod:`jupyter_imagine._frame`). A notebook asks for it again and again while a few jobs change.
So a SQLite store reads the whole table in blocks of rowids (:func:`~jupyter_imagine._frame.
select_blocks`) and keeps every block's parsed part (:class:`~jupyter_imagine._frame.Part`); the
next whole read asks the change journal (schema 6's ``job_changes``, kept by triggers on
``jobs``: see :func:`~jupyter_imagine.store._sqlite._schema_v6`) which rows were inserted,
updated or deleted since, and reads only their blocks. The frame is assembled from the parts
again, so every array in it is new (its values, strings, dicts and lists, are shared with the
kept parts: change a cell's dict in place and the next frame shows it too).

What it costs: the parts hold the same values as the frame, so while the frame lives they cost
only their arrays. They are kept **only while the last frame returned is alive**: once the
caller drops it, they go too, and the next read is a whole one. A notebook holds the frame it
showed (``Out``), so the next call there is cheap; a script that reads once pays nothing.

Correctness: the journal's last number, the table's rowid range and the blocks are read in one
read transaction (one snapshot), and changes are numbered in commit order (SQLite has one
writer at a time), so a change committed meanwhile is in all of them or in none. Everything is
read again when nothing is kept, when the table doubled (the block size changes:
:func:`~jupyter_imagine._frame.block_size`), when the schema changed (``PRAGMA
schema_version``: a migration, a ``VACUUM``) or when the journal's last number went back (the
file was replaced by an older copy, or the journal emptied by hand).

Only the whole history is kept: a filtered, limited or ``include_raw`` read is read whole, and
the team store on PostgreSQL keeps nothing (see its ``_schema_v6``).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import _frame

__all__ = ["CHANGES_TABLE", "FrameCache", "Plan"]

#: The change journal's table (schema 6: ``job_rowid``, ``seq``; made by the SQLite store).
CHANGES_TABLE = "job_changes"
_LAST_CHANGE = f"SELECT IFNULL((SELECT MAX(seq) FROM {CHANGES_TABLE}), 0)"
_CHANGED_ROWIDS = f"SELECT job_rowid FROM {CHANGES_TABLE} WHERE seq > ?"
_ROWIDS = "SELECT min(rowid), max(rowid) FROM jobs"


@dataclass(frozen=True)
class Plan:
    """What one whole read does: read blocks ``read`` (of ``size`` rowids) and reuse the kept
    parts ``reuse``; ``schema`` and ``seq`` are the snapshot's schema version and last change."""

    schema: int
    size: int
    seq: int
    read: list[int]
    reuse: Mapping[int, _frame.Part] = field(default_factory=dict)


@dataclass(frozen=True)
class _Kept:
    schema: int
    size: int
    seq: int
    parts: Mapping[int, _frame.Part]


class FrameCache:
    """The parsed parts of the last whole-history frame a store returned, while it is alive.

    Thread-safe for the store's use: :meth:`plan` runs under the store's lock, and the kept
    state is replaced whole, never changed in place.
    """

    def __init__(self) -> None:
        self._kept: _Kept | None = None

    def plan(self, conn: Any) -> Plan:
        """The :class:`Plan` of a whole read, asked on ``conn`` inside the read transaction the
        blocks are then read in."""
        (schema,) = conn.execute("PRAGMA schema_version").fetchone()
        (seq,) = conn.execute(_LAST_CHANGE).fetchone()
        first, last = conn.execute(_ROWIDS).fetchone()
        size = _frame.block_size(first, last)
        present = ([] if first is None else
                   list(range(_frame.block_of(first, size), _frame.block_of(last, size) + 1)))
        kept = self._kept
        if kept is None or (kept.schema, kept.size) != (schema, size) or seq < kept.seq:
            return Plan(schema, size, seq, present)  # seq went back: another file, or cleared
        changed = {_frame.block_of(rowid, size)
                   for (rowid,) in conn.execute(_CHANGED_ROWIDS, (kept.seq,))}
        reuse = {k: kept.parts[k] for k in present if k in kept.parts and k not in changed}
        return Plan(schema, size, seq, [k for k in present if k not in reuse], reuse)

    def keep(self, frame: object, plan: Plan, parts: Mapping[int, _frame.Part]) -> None:
        """Keep ``parts`` (the blocks of ``plan``'s snapshot) for as long as ``frame`` lives."""
        kept = _Kept(plan.schema, plan.size, plan.seq, parts)
        self._kept = kept
        weakref.finalize(frame, self._forget, kept)

    def _forget(self, kept: _Kept) -> None:
        if self._kept is kept:  # a newer frame's parts stay
            self._kept = None

    def clear(self) -> None:
        """Keep nothing: the next whole read reads every block."""
        self._kept = None
