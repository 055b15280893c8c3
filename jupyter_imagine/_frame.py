"""The history frame: its column table, the one SQL query that reads it, and its typed build.

:data:`COLUMNS` is the frame's column table, in order: each column's name, its *kind* (how it
is read and typed) and the SQL value it comes from. A new column is one line there. The store
runs :func:`select` (its filters and order come in as SQL text) and hands the one result row to
:func:`build`; nothing here opens a database.

How it is read, and why: the query does not return one row per job but **one row of column
aggregates**: every text column as one JSON array (``json_group_array``), every JSON column
(params, urls, paths) as one JSON array text, the small numbers (status, known-provider code,
sandbox, image count, width, height …) packed into one integer per job and sent as one
comma-separated text, and the timestamps as one fixed-width text. Python never sees a row:
``json.loads`` (C) makes each column's list, numpy parses the numbers and timestamps from one
buffer, and the DataFrame is assembled without copies. The per-value cost of ``sqlite3``
building row tuples was most of the old build.

Parts: a read without a limit is split by ``rowid`` range into parts of about
:data:`ROWS_PER_PART` jobs (:func:`part_bounds`), one ``UNION ALL`` statement (so one snapshot)
that returns one aggregate row per part. The store reads the next part while :func:`build` parses
the one before (the database works without the GIL), so the query and the parse overlap; smaller
texts are also cheaper for the database to grow.

Blocks: the whole history on SQLite is read in parts of fixed rowid ranges instead,
:func:`select_blocks` (block *k* is rowids ``k * size + 1`` … ``(k + 1) * size``,
:func:`block_size`), so a part read once stays the same part: the store keeps the parsed parts
(:func:`parse_row` → :class:`Part`) and :func:`assemble` builds the next frame from them and the
blocks that changed (:mod:`jupyter_imagine.store._frame_cache`).

Order: each part holds its rows in storage order (rowid ascending: on SQLite a range of the table
itself, the cheapest scan; filtered or on PostgreSQL, a subquery ordered by ``rowid``) and the
whole is reversed here; a limited read orders its rows in a subquery. Either way the rows are
re-sorted newest first by ``created_at`` (ties: last saved first) only if they are not already.

Other databases: the same frame comes from any backend whose SQL can aggregate a column into a
JSON array and concatenate text in a given order. :class:`Dialect` holds the SQL
templates: :data:`SQLITE` and :data:`POSTGRESQL` (``json_agg``/``string_agg`` over the same
columns, which hold the same texts: timestamps are the same fixed-width ISO text on both). The
builder only sees the texts, whatever produced them.

A 100,000-job result is ~1.5 million fresh Python objects; :func:`gc_paused` keeps the cyclic
collector from walking them again and again meanwhile (nothing built here forms cycles).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ._schema import KEY_COLUMNS, KNOWN_PROVIDERS, STATUS_ORDER
from ._secrets import scrub

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

__all__ = [
    "COLUMNS",
    "DATA_COLUMNS",
    "POSTGRESQL",
    "SQLITE",
    "Dialect",
    "FrameColumn",
    "Part",
    "assemble",
    "block_of",
    "block_size",
    "build",
    "gc_paused",
    "parse_row",
    "part_bounds",
    "select",
    "select_blocks",
]


@dataclass(frozen=True)
class FrameColumn:
    """One column of the history frame.

    ``kind`` says how it is read and typed: ``text`` (pandas' text dtype, NA for NULL),
    ``category`` (categorical of the values present), ``json`` (one Python object per row,
    parsed from JSON text), ``float``, ``time`` (datetime64[ns, UTC]), ``seconds`` (float:
    ``source`` is ``"end start"``, two time columns of this table), and the packed kinds
    ``status`` / ``provider`` (categoricals of fixed categories), ``flag`` (bool), ``count``
    (int64) and ``size`` (Int64, NULL or 0 is NA). ``source`` is the SQL value per job.
    """

    name: str
    kind: str
    source: str


#: The frame's columns, in order (``provider`` and ``id`` become the index).
COLUMNS: tuple[FrameColumn, ...] = (
    FrameColumn("provider", "provider", "provider"),
    FrameColumn("id", "text", "id"),
    FrameColumn("remote_id", "text", "remote_id"),
    FrameColumn("parent_id", "text", "parent_id"),
    FrameColumn("root_id", "text", "root_id"),
    FrameColumn("kind", "category", "kind"),
    FrameColumn("action", "text", "action"),
    FrameColumn("status", "status", "status"),
    FrameColumn("prompt", "text", "prompt"),
    FrameColumn("negative_prompt", "text", "negative_prompt"),
    FrameColumn("params", "json", "params"),
    FrameColumn("created_at", "time", "created_at"),
    FrameColumn("started_at", "time", "started_at"),
    FrameColumn("completed_at", "time", "completed_at"),
    FrameColumn("queue_s", "seconds", "started_at created_at"),
    FrameColumn("run_s", "seconds", "completed_at started_at"),
    FrameColumn("total_s", "seconds", "completed_at created_at"),
    FrameColumn("n_images", "count", "n_images"),
    FrameColumn("missing_images", "count", "missing_images"),
    FrameColumn("width", "size", "width"),
    FrameColumn("height", "size", "height"),
    FrameColumn("image_urls", "json", "urls"),
    FrameColumn("image_paths", "json", "paths"),
    FrameColumn("cost", "float", "cost"),
    FrameColumn("cost_unit", "category", "cost_unit"),
    FrameColumn("cost_source", "category", "cost_source"),
    FrameColumn("error", "text", "error"),
    FrameColumn("user", "category", "created_by"),
    FrameColumn("host", "category", "created_on"),
    FrameColumn("sandbox", "flag", "sandbox"),
)
#: The frame's columns without the key (what a frame indexed by ``(provider, id)`` has).
DATA_COLUMNS = tuple(c.name for c in COLUMNS if c.name not in KEY_COLUMNS)

# Packed kinds: bits per value (a value over the width saturates; sizes are positive, so a NULL
# size travels as 0). They are packed into 63-bit words, so any number of them fits.
_BITS = {"status": 3, "flag": 1, "count": 12, "size": 20}
_UNIT_SEPARATOR = "\x1f"
# Timestamps as the store writes them: fixed-width ISO-8601 UTC.
_STAMP_WIDTH = 32  # "YYYY-MM-DDTHH:MM:SS.ffffff+00:00"
_UTC_SUFFIX = b"+00:00"
_NO_STAMP = "0001-01-01T00:00:00.000000+00:00"  # stands for NULL (no job is that old)
_WORD_BITS = 63
#: A read without a limit is split into parts of about this many rowids, and at most
#: :data:`MOST_PARTS` parts (see :func:`part_bounds`).
ROWS_PER_PART = 8192
MOST_PARTS = 16


@dataclass(frozen=True)
class Dialect:
    """A backend's SQL templates for the frame's query.

    ``json_array`` aggregates values (``{v}``) into one JSON array text (NULL → ``null``),
    ``concat`` concatenates texts with a separator ``{sep}`` (skipping NULLs), ``char`` makes a
    one-character literal from its code point ``{code}``, ``clamp`` bounds an integer to
    ``0…{top}``, ``flag`` makes 0/1 of a value, ``shift`` moves a 64-bit integer ``{n}`` bits
    left, ``raw`` is each job's payload as JSON text. ``table_order``: a scan of table ``jobs``
    (whole, or a ``rowid`` range) yields its rows in ``rowid`` order, as SQLite's table (its rowid
    b-tree) does; default ``True``. Otherwise every part orders its rows in a subquery.
    """

    json_array: str
    concat: str
    char: str
    clamp: str = "max(0, min({v}, {top}))"
    flag: str = "({v} <> 0)"
    shift: str = "(({v}) << {n})"
    raw: str = "json_quote(json_extract(record, '$.raw'))"
    table_order: bool = True


#: SQLite's templates (its JSON functions are built in since 3.38).
SQLITE = Dialect(json_array="json_group_array({v})", concat="group_concat({v}, {sep})",
                 char="char({code})")

#: PostgreSQL's: the same texts from ``json_agg``/``string_agg`` (results cast to text, so the
#: driver hands over the text and never parses it), 64-bit shifts, a clamp that keeps NULL
#: (``GREATEST``/``LEAST`` skip NULLs there) and no table order (a heap's order is not insertion
#: order, so every part orders its rows by ``rowid``, which the ``jobs_rowid`` index serves).
POSTGRESQL = Dialect(
    json_array="CAST(json_agg({v}) AS TEXT)",
    concat="string_agg(CAST({v} AS TEXT), {sep})",
    char="chr({code})",
    clamp="(CASE WHEN {v} IS NULL THEN NULL ELSE GREATEST(0, LEAST({v}, {top})) END)",
    flag="(CASE WHEN {v} <> 0 THEN 1 ELSE 0 END)",
    shift="(CAST({v} AS BIGINT) << {n})",
    raw="COALESCE(CAST(CAST(record AS json) -> 'raw' AS TEXT), 'null')",
    table_order=False,
)


def _codes(column: str, names: Sequence[str], *, other: int) -> str:
    whens = " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(names))
    return f"CASE {column} {whens} ELSE {other} END"


def _packed_value(column: FrameColumn, dialect: Dialect) -> str:
    """The SQL integer a packed column contributes before shifting."""
    top = (1 << _BITS[column.kind]) - 1
    if column.kind == "status":
        return _codes(column.source, STATUS_ORDER, other=0)
    if column.kind == "flag":
        return dialect.flag.format(v=f"COALESCE({column.source}, 0)")
    return f"COALESCE({dialect.clamp.format(v=column.source, top=top)}, 0)"


def _words() -> list[list[tuple[FrameColumn, int]]]:
    """The packed columns grouped into 63-bit words: [(column, shift), …] per word."""
    words: list[list[tuple[FrameColumn, int]]] = [[]]
    used = 0
    for column in COLUMNS:
        bits = _BITS.get(column.kind)
        if bits is None:
            continue
        if used + bits > _WORD_BITS:
            words.append([])
            used = 0
        words[-1].append((column, used))
        used += bits
    return [w for w in words if w]


_WORDS = _words()
_TIMES = tuple(c for c in COLUMNS if c.kind == "time")


def _aggregates(dialect: Dialect, include_raw: bool) -> list[tuple[str, str]]:
    """(name, SQL aggregate) for everything the query returns, in order."""
    comma = "','"
    out: list[tuple[str, str]] = []
    for column in COLUMNS:
        if column.kind in ("text", "category", "float", "provider"):
            out.append((column.name, dialect.json_array.format(v=column.source)))
        elif column.kind == "json":
            value = f"COALESCE({column.source}, 'null')"
            out.append((column.name, dialect.concat.format(v=value, sep=comma)))
    for k, word in enumerate(_WORDS):
        value = " | ".join(dialect.shift.format(v=_packed_value(c, dialect), n=shift)
                           for c, shift in word)
        out.append((f"packed{k}", dialect.concat.format(v=value, sep=comma)))
    separator = dialect.char.format(code=ord(_UNIT_SEPARATOR))
    for column in _TIMES:
        out.append((column.name, dialect.concat.format(
            v=f"COALESCE({column.source}, '{_NO_STAMP}')", sep=separator)))
    if include_raw:  # the payload as JSON, extracted by the database (no parse of records)
        out.append(("raw", dialect.concat.format(v=dialect.raw, sep=comma)))
    return out


@functools.cache
def _names(include_raw: bool) -> tuple[str, ...]:
    """The names of :func:`_aggregates`' values, in order (the same on every dialect)."""
    return tuple(name for name, _ in _aggregates(SQLITE, include_raw))


def aggregate_at(name: str, *, include_raw: bool = False) -> int:
    """Where the aggregate of column ``name`` is in the row of :func:`select`'s query (the same
    on every dialect)."""
    return _names(include_raw).index(name)


def _sources(include_raw: bool) -> str:
    """The plain columns a subquery must pass on to the aggregates."""
    names: list[str] = []
    for column in COLUMNS:
        for name in column.source.split() if column.kind == "seconds" else [column.source]:
            if name not in names:
                names.append(name)
    return ", ".join([*names, *(["record"] if include_raw else [])])


def part_bounds(first: int | None, last: int | None) -> list[int]:
    """The rowids that split rowids ``first`` … ``last`` into parts of about
    :data:`ROWS_PER_PART` (at most :data:`MOST_PARTS`): part *k* holds the rowids above
    ``bounds[k - 1]`` and up to ``bounds[k]``; the first and the last part are open-ended, so rows
    saved after the bounds were read are still read. ``[]`` (one part) for a small table or an
    empty one (``None``)."""
    if first is None or last is None:
        return []
    parts = min(MOST_PARTS, (last - first) // ROWS_PER_PART + 1)
    step = (last - first + 1) / parts
    return [first - 1 + round(step * k) for k in range(1, parts)]


def _range(low: int | None, high: int | None) -> tuple[list[str], list[int]]:
    """The conditions (and their arguments) of the rowids above ``low`` and up to ``high``."""
    conditions: list[str] = []
    values: list[int] = []
    if low is not None:
        conditions.append("rowid > ?")
        values.append(low)
    if high is not None:
        conditions.append("rowid <= ?")
        values.append(high)
    return conditions, values


def select(where: str = "", args: Sequence[Any] = (), *, order: str = "",
           bounds: Sequence[int] = (), include_raw: bool = False,
           dialect: Dialect = SQLITE) -> tuple[str, list[Any], bool]:
    """The frame's query over table ``jobs``: one aggregate row per part of the rows.

    Args:
        where: a SQL ``WHERE …`` clause (with ``?`` placeholders), default none: every job.
        args: the values of ``where``'s placeholders, default none.
        order: ``ORDER BY … [LIMIT ?]`` (its value last in ``args``) for a limited read: one
            part, rows in that order. Default none: the rows in storage order, in parts.
        bounds: the rowids between parts (:func:`part_bounds`), default none: one part. Ignored
            with ``order``.
        include_raw: also aggregate each job's raw payload; default ``False``.
        dialect: the backend's aggregate templates, default :data:`SQLITE`.

    Returns ``(sql, args, in_storage_order)``: ``in_storage_order`` is ``True`` when the rows
    come oldest saved first, so :func:`build` must reverse them (``storage_order=True``).
    Each row ends with its part's number, so :func:`build` joins the parts in order whatever
    order they arrive in.
    """
    aggregates = ", ".join(sql for _, sql in _aggregates(dialect, include_raw))
    if order:
        inner = f"SELECT {_sources(include_raw)} FROM jobs{where}{order}"
        return f"SELECT {aggregates}, 0 FROM ({inner}) AS picked", list(args), False
    edges = [None, *bounds, None]
    ranges = [(k, low, high) for k, (low, high) in enumerate(itertools.pairwise(edges))]
    sql, values = _parts(ranges, aggregates, where, args, include_raw, dialect)
    return sql, values, True


def select_blocks(blocks: Iterable[int], size: int, *,
                  dialect: Dialect = SQLITE) -> tuple[str, list[Any]]:
    """The query of the whole table's blocks ``blocks`` of ``size`` rowids: block *k* holds
    rowids above ``k * size`` and up to ``(k + 1) * size`` (:func:`block_of`). One aggregate row
    per block, ending with *k*, rows in storage order (:func:`build` with
    ``storage_order=True``). A block without rows gives a row of empty aggregates."""
    aggregates = ", ".join(sql for _, sql in _aggregates(dialect, False))
    ranges = [(k, k * size, (k + 1) * size) for k in sorted(blocks)]
    return _parts(ranges, aggregates, "", (), False, dialect)


def block_size(first: int | None, last: int | None) -> int:
    """The block size (:func:`select_blocks`) for rowids ``first`` … ``last``: the smallest
    :data:`ROWS_PER_PART` × 2**j that splits them into at most :data:`MOST_PARTS`
    blocks. It changes only when the table doubles, so blocks read once stay valid."""
    size = ROWS_PER_PART
    if first is None or last is None:
        return size
    while block_of(last, size) - block_of(first, size) + 1 > MOST_PARTS:
        size *= 2
    return size


def block_of(rowid: int, size: int) -> int:
    """The block (of ``size`` rowids, see :func:`select_blocks`) that holds ``rowid``."""
    return (rowid - 1) // size


def _parts(ranges: Sequence[tuple[int, int | None, int | None]], aggregates: str, where: str,
           args: Sequence[Any], include_raw: bool, dialect: Dialect) -> tuple[str, list[Any]]:
    """One ``UNION ALL`` of the aggregates of each ``(k, low, high)`` rowid range, row *k*."""
    parts: list[str] = []
    values: list[Any] = []
    for k, low, high in ranges:
        conditions, limits = _range(low, high)
        if where:
            conditions.insert(0, f"({where.removeprefix(' WHERE ')})")
            limits = [*args, *limits]
        clause = " WHERE " + " AND ".join(conditions) if conditions else ""
        if dialect.table_order and not where:  # a range of the table itself: rowid order
            scan = clause or " NOT INDEXED"  # the whole table: in storage order, never an index
            parts.append(f"SELECT {aggregates}, {k} FROM jobs{scan}")
        else:
            inner = f"SELECT {_sources(include_raw)} FROM jobs{clause} ORDER BY rowid"
            parts.append(f"SELECT {aggregates}, {k} FROM ({inner}) AS picked")
        values += limits
    return " UNION ALL ".join(parts), values


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large result becomes a frame."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build(rows: Iterable[Sequence[Any]], *, ordered: bool, storage_order: bool = False,
          include_raw: bool = False, keys_as_columns: bool = False) -> pd.DataFrame:
    """The frame from the rows of :func:`select`'s query, each parsed as soon as it comes.

    Args:
        rows: one row of aggregates per part, in :func:`select`'s order (none: no jobs).
        ordered: the rows are already newest first (a query ordered by ``created_at``).
        storage_order: the rows come oldest-saved first (table order) and are reversed first.
        include_raw: the query aggregated the payloads: add a ``raw`` column (dicts, secrets
            stripped); default ``False``.
        keys_as_columns: also keep ``provider`` and ``id`` as the first two columns (the index
            levels are then unnamed, so ``df.groupby("provider")`` stays unambiguous); default
            ``False``: they are only the index, named ``provider`` and ``id``.

    Unless ``ordered``, the rows are re-sorted newest first by ``created_at`` (ties: last saved
    first) when they are not already.
    """
    parsed = dict(parse_row(row, include_raw=include_raw) for row in rows)  # each as it comes
    return assemble(parsed, ordered=ordered, storage_order=storage_order,
                    include_raw=include_raw, keys_as_columns=keys_as_columns)


def parse_row(row: Sequence[Any], *, include_raw: bool = False) -> tuple[int, Part]:
    """``(k, part)``: one row of :func:`select`'s (or :func:`select_blocks`') query parsed into
    the typed pieces of part *k* (its last value), for :func:`assemble`. ``include_raw`` as the
    query was made; default ``False``."""
    names = _names(include_raw)
    return row[-1], Part(_parse(dict(zip(names, row[:-1], strict=True)), include_raw))


def assemble(parts: Mapping[int, Part], *, ordered: bool, storage_order: bool = False,
             include_raw: bool = False, keys_as_columns: bool = False) -> pd.DataFrame:
    """The frame of parsed parts (:func:`parse_row`), joined in the order of their numbers;
    the arguments as for :func:`build`. Every array of the frame is new: parts can be kept and
    assembled again (the values in them, strings, dicts and lists, are shared)."""
    import numpy as np
    import pandas as pd

    pieces = [parts[k].pieces for k in sorted(parts)] or [_parse({}, include_raw)]
    arrays = _joined(pieces, storage_order)
    columns = _typed(arrays)
    data = {c.name: columns[c.name] for c in COLUMNS}
    if include_raw:
        data["raw"] = pd.Series(arrays["raw"], dtype=object)
    frame = pd.DataFrame(data, copy=False)  # fresh arrays, nothing shared
    n = len(frame)
    frame = _keyed(frame, columns["provider"], columns["id"], keys_as_columns=keys_as_columns)
    if not ordered and n > 1:
        stamps = columns["created_at"].to_numpy(dtype="datetime64[ns]").view("int64")
        if (np.diff(stamps) > 0).any():  # created_at descending; ties keep last saved first
            frame = frame.take(np.lexsort((np.arange(n), -stamps)))
    return frame


def _json_list(text: str | None, *, json_array: bool) -> list[Any]:
    if text is None:
        return []
    return json.loads(text if json_array else "[" + text + "]")


def _parse(raw: dict[str, Any], include_raw: bool) -> dict[str, Any]:
    """One part's aggregates as typed pieces, rows in the query's order (see :func:`_piece`),
    the packed words as int64, the times as datetime64[us] and the payloads (``raw``) as
    scrubbed dicts. ``raw == {}``: no rows. The costly per-value work (JSON, text checks,
    factorizing) happens here, part by part, while the database computes the next part."""
    import numpy as np

    packed = raw.get("packed0")  # one integer per job, never NULL
    n = packed.count(",") + 1 if packed else 0
    out: dict[str, Any] = {}
    for column in COLUMNS:
        kind, value = column.kind, raw.get(column.name)
        if kind in ("text", "category", "json", "float", "provider"):
            items = _json_list(value, json_array=kind != "json")
            # fromiter never looks inside lists and dicts
            out[column.name] = _piece(kind, np.fromiter(items, dtype=object, count=n))
        elif kind == "time":
            out[column.name] = _parse_stamps(value, n)
    for k in range(len(_WORDS)):
        text = raw.get(f"packed{k}")
        out[f"packed{k}"] = (np.fromstring(text, dtype=np.int64, sep=",") if text
                             else np.zeros(0, dtype=np.int64))
    if include_raw:
        payloads = _json_list(raw.get("raw"), json_array=False)
        out["raw"] = np.fromiter((scrub(r) if r is not None else {} for r in payloads),
                                 dtype=object, count=n)
    return out


@dataclass(frozen=True)
class Part:
    """One part of the frame, parsed (:func:`parse_row`): its typed pieces by name."""

    pieces: dict[str, Any]

    def __len__(self) -> int:
        """The part's rows."""
        return len(self.pieces["packed0"])


class _Factorized(NamedTuple):
    """A category column's part: codes (-1 for NA) into its ``uniques``."""

    codes: np.ndarray
    uniques: np.ndarray


def _piece(kind: str, values: np.ndarray) -> Any:
    """One part of a JSON-kind column, typed: text as pandas' text array, a category as
    :class:`_Factorized`, a float as float64 (None → NaN); provider and json stay objects."""
    import numpy as np
    import pandas as pd

    if kind == "text":
        return pd.array(values, dtype=_text_dtype())
    if kind == "category":
        codes, uniques = pd.factorize(values)
        return _Factorized(codes, np.asarray(uniques, dtype=object))
    if kind == "float":
        return values.astype(np.float64)
    return values


@functools.cache
def _text_dtype() -> Any:
    """pandas' default dtype for text: "str" (NaN for missing) on pandas 3, object before. Asked
    once: every text column of every part needs it, and asking costs a Series (~0.1 ms)."""
    import pandas as pd

    return pd.Series(["x"]).dtype


def _joined(parts: list[dict[str, Any]], reverse: bool) -> dict[str, Any]:
    """The parts' pieces joined end to end, each reversed (``reverse``: last row first)."""
    order = list(reversed(parts)) if reverse else parts
    step = -1 if reverse else 1
    return {name: _join([part[name] for part in order], step) for name in parts[0]}


def _join(pieces: list[Any], step: int) -> Any:
    """One column's pieces, in order, each read with ``step`` (-1: backwards)."""
    import numpy as np
    import pandas as pd

    first = pieces[0]
    if isinstance(first, _Factorized):  # one sorted set of categories, codes mapped onto it
        categories = sorted(set().union(*(p.uniques for p in pieces)))
        # a few labels per part: a dict maps them in µs, an Index's get_indexer costs ~0.4 ms
        position = {value: code for code, value in enumerate(categories)}
        codes = []
        for piece in pieces:
            mapping = np.array([*(position[v] for v in piece.uniques), -1],  # -1 stays -1
                               dtype=np.intp)
            codes.append(mapping[piece.codes[::step]])
        return pd.Categorical.from_codes(np.concatenate(codes),
                                         categories=pd.Index(categories))
    if isinstance(first, np.ndarray):
        return np.concatenate([piece[::step] for piece in pieces])
    return type(first)._concat_same_type([piece[::step] for piece in pieces])


def _typed(arrays: dict[str, Any]) -> dict[str, Any]:
    """Every column of :data:`COLUMNS` as a pandas Series (or Categorical), by name."""
    import pandas as pd

    out: dict[str, Any] = {}
    for column in COLUMNS:
        kind, array = column.kind, arrays.get(column.name)
        if kind == "provider":
            out[column.name] = _providers(array)
        elif kind == "time":
            out[column.name] = _times(array)
        elif kind == "category":
            out[column.name] = array
        elif kind in ("text", "json", "float"):
            out[column.name] = pd.Series(array, copy=False)
    out.update(_unpack(arrays))
    for column in COLUMNS:
        if column.kind == "seconds":
            end, start = column.source.split()
            out[column.name] = (out[end] - out[start]).dt.total_seconds()
    return out


def _unpack(arrays: dict[str, np.ndarray]) -> dict[str, pd.Series | pd.Categorical]:
    """The packed columns (see :func:`_words`), by name."""
    import numpy as np
    import pandas as pd

    out: dict[str, Any] = {}
    for k, word in enumerate(_WORDS):
        packed = arrays[f"packed{k}"]
        for column, shift in word:
            values = (packed >> shift) & ((1 << _BITS[column.kind]) - 1)
            if column.kind == "status":
                out[column.name] = pd.Categorical.from_codes(
                    values.astype(np.int8), categories=list(STATUS_ORDER))
            elif column.kind == "flag":
                out[column.name] = pd.Series(values.astype(bool))
            elif column.kind == "count":
                out[column.name] = pd.Series(values)
            else:  # size: 0 stands for NA
                out[column.name] = pd.Series(pd.arrays.IntegerArray(values, values == 0))
    return out


def _providers(values: np.ndarray) -> pd.Categorical:
    """The provider column; its categories always include :data:`KNOWN_PROVIDERS`, so frames of
    different providers (or filters) have the same dtype."""
    import numpy as np
    import pandas as pd

    categories = pd.Index(list(KNOWN_PROVIDERS))
    codes = categories.get_indexer(values)
    if not (codes < 0).any():
        return pd.Categorical.from_codes(codes.astype(np.int16), categories=categories)
    # rare: a provider outside KNOWN_PROVIDERS (a test double, a plug-in)
    return pd.Categorical(values, categories=sorted(set(KNOWN_PROVIDERS).union(values)))


def _keyed(frame: pd.DataFrame, provider: pd.Categorical, ids: pd.Series, *,
           keys_as_columns: bool) -> pd.DataFrame:
    """``frame`` indexed by its key ``(provider, id)``, built from the provider codes and the id
    strings without new objects; the key columns dropped unless ``keys_as_columns``."""
    import numpy as np
    import pandas as pd

    frame.index = pd.MultiIndex(
        # a categorical level, so reset_index() gives the categorical provider column
        levels=[pd.CategoricalIndex(provider.categories, categories=provider.categories),
                pd.Index(ids)],
        codes=[provider.codes, np.arange(len(frame))],
        names=[None, None] if keys_as_columns else list(KEY_COLUMNS),
        verify_integrity=False,
    )
    if keys_as_columns:
        return frame
    return frame.drop(columns=list(KEY_COLUMNS))


def _parse_stamps(text: str | None, n: int) -> np.ndarray:
    """A time column's ``n`` stamps joined by the unit separator (NULL as :data:`_NO_STAMP`),
    as datetime64[us] (UTC, NULL still :data:`_NO_STAMP`)."""
    import numpy as np
    import pandas as pd

    width, bare = _STAMP_WIDTH, _STAMP_WIDTH - len(_UTC_SUFFIX)
    data = (text or "").encode("ascii", "replace") + _UNIT_SEPARATOR.encode()
    if n and len(data) == n * (width + 1):  # what the store writes: cut and parse in numpy
        table = np.frombuffer(data, dtype=np.uint8).reshape(n, width + 1)
        if (table[:, bare:width] == np.frombuffer(_UTC_SUFFIX, np.uint8)).all():
            head = np.ascontiguousarray(table[:, :bare])
            with contextlib.suppress(ValueError):
                return head.view(f"S{bare}").ravel().astype("datetime64[us]")
    # rows written by hand in another form: let pandas cope, row by row
    values = pd.Series((text or "").split(_UNIT_SEPARATOR) if n else [], dtype=object)
    values = values.where(values != _NO_STAMP, None)
    return (pd.to_datetime(values, format="ISO8601", utc=True).dt.tz_localize(None)
            .to_numpy(dtype="datetime64[us]"))


def _times(stamps: np.ndarray) -> pd.Series:
    """A time column from :func:`_parse_stamps`' stamps: datetime64[ns, UTC], NaT for NULL."""
    import numpy as np
    import pandas as pd

    stamps = stamps.copy()
    stamps[stamps == np.datetime64(_NO_STAMP[:_STAMP_WIDTH - len(_UTC_SUFFIX)], "us")] = (
        np.datetime64("NaT"))
    return pd.Series(stamps.astype("datetime64[ns]")).dt.tz_localize("UTC")
