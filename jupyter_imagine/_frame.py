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

Order: an unfiltered read scans the table in storage order (``NOT INDEXED``: rowid ascending,
the cheapest scan) and is reversed here; a filtered or limited read orders rows in a subquery.
Either way the rows are re-sorted newest first by ``created_at`` (ties: last saved first) only
if they are not already.

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
import gc
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    "build",
    "gc_paused",
    "select",
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


@dataclass(frozen=True)
class Dialect:
    """A backend's SQL templates for the frame's query.

    ``json_array`` aggregates values (``{v}``) into one JSON array text (NULL → ``null``),
    ``concat`` concatenates texts with a separator ``{sep}`` (skipping NULLs), ``char`` makes a
    one-character literal from its code point ``{code}``, ``clamp`` bounds an integer to
    ``0…{top}``, ``flag`` makes 0/1 of a value, ``shift`` moves a 64-bit integer ``{n}`` bits
    left, ``raw`` is each job's payload as JSON text, and ``scan`` follows ``FROM jobs`` in an
    unfiltered read (``NOT INDEXED`` on SQLite: storage order).
    """

    json_array: str
    concat: str
    char: str
    clamp: str = "max(0, min({v}, {top}))"
    flag: str = "({v} <> 0)"
    shift: str = "(({v}) << {n})"
    raw: str = "json_quote(json_extract(record, '$.raw'))"
    scan: str = " NOT INDEXED"


#: SQLite's templates (its JSON functions are built in since 3.38).
SQLITE = Dialect(json_array="json_group_array({v})", concat="group_concat({v}, {sep})",
                 char="char({code})")

#: PostgreSQL's: the same texts from ``json_agg``/``string_agg`` (results cast to text, so the
#: driver hands over the text and never parses it), 64-bit shifts, a clamp that keeps NULL
#: (``GREATEST``/``LEAST`` skip NULLs there) and no storage-order scan (the store always orders
#: PostgreSQL's rows: its heap order is not insertion order).
POSTGRESQL = Dialect(
    json_array="CAST(json_agg({v}) AS TEXT)",
    concat="string_agg(CAST({v} AS TEXT), {sep})",
    char="chr({code})",
    clamp="(CASE WHEN {v} IS NULL THEN NULL ELSE GREATEST(0, LEAST({v}, {top})) END)",
    flag="(CASE WHEN {v} <> 0 THEN 1 ELSE 0 END)",
    shift="(CAST({v} AS BIGINT) << {n})",
    raw="COALESCE(CAST(CAST(record AS json) -> 'raw' AS TEXT), 'null')",
    scan="",
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


def aggregate_at(name: str, *, include_raw: bool = False) -> int:
    """Where the aggregate of column ``name`` is in the row of :func:`select`'s query (the same
    on every dialect)."""
    return [n for n, _ in _aggregates(SQLITE, include_raw)].index(name)


def _sources(include_raw: bool) -> str:
    """The plain columns a subquery must pass on to the aggregates."""
    names: list[str] = []
    for column in COLUMNS:
        for name in column.source.split() if column.kind == "seconds" else [column.source]:
            if name not in names:
                names.append(name)
    return ", ".join([*names, *(["record"] if include_raw else [])])


def select(where: str = "", order: str = "", *, include_raw: bool = False,
           dialect: Dialect = SQLITE) -> tuple[str, bool]:
    """The frame's query over table ``jobs``, and whether its rows come in storage order.

    Args:
        where: a SQL ``WHERE …`` clause (with ``?`` placeholders), default none.
        order: ``ORDER BY … [LIMIT ?]`` for the rows, default none: the whole table (or the
            filtered rows) in storage order.
        include_raw: also aggregate each job's raw payload; default ``False``.
        dialect: the backend's aggregate templates, default :data:`SQLITE`.

    Returns ``(sql, in_storage_order)``: ``True`` when nothing orders the rows, so
    :func:`build` must reverse them (``ordered=False``).
    """
    aggregates = ", ".join(sql for _, sql in _aggregates(dialect, include_raw))
    if not where and not order:
        return f"SELECT {aggregates} FROM jobs{dialect.scan}", True
    inner = f"SELECT {_sources(include_raw)} FROM jobs{where}{order}"
    return f"SELECT {aggregates} FROM ({inner}) AS picked", False


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


def build(row: Sequence[Any] | None, *, ordered: bool, storage_order: bool = False,
          include_raw: bool = False, keys_as_columns: bool = False) -> pd.DataFrame:
    """The frame from the one row of :func:`select`'s query.

    Args:
        row: the aggregates, in :func:`select`'s order (``None``: no jobs).
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
    import numpy as np
    import pandas as pd

    names = [name for name, _ in _aggregates(SQLITE, include_raw)]
    raw = dict(zip(names, row or [None] * len(names), strict=True))
    packed = raw["packed0"]  # one integer per job, never NULL
    n = packed.count(",") + 1 if packed else 0
    flip = slice(None, None, -1) if storage_order else slice(None)
    columns = _decode(raw, n, flip)
    if include_raw:
        values = json.loads("[" + (raw["raw"] or "") + "]")[flip]
        columns["raw"] = pd.Series([scrub(r) if r is not None else {} for r in values],
                                   dtype=object)
    data = {c.name: columns[c.name] for c in COLUMNS}
    if include_raw:
        data["raw"] = columns["raw"]
    frame = pd.DataFrame(data, copy=False)  # fresh arrays, nothing shared
    provider, ids = columns["provider"], columns["id"]
    frame = _keyed(frame, provider, ids, keys_as_columns=keys_as_columns)
    if not ordered and n > 1:
        stamps = columns["created_at"].to_numpy(dtype="datetime64[ns]").view("int64")
        if (np.diff(stamps) > 0).any():  # created_at descending; ties keep last saved first
            frame = frame.take(np.lexsort((np.arange(n), -stamps)))
    return frame


def _json_list(text: str | None, *, json_array: bool) -> list[Any]:
    if text is None:
        return []
    return json.loads(text if json_array else "[" + text + "]")


def _decode(raw: dict[str, Any], n: int, flip: slice) -> dict[str, Any]:
    """Every column of :data:`COLUMNS` as a pandas Series (or Categorical), rows flipped."""
    import numpy as np
    import pandas as pd

    # pandas' default for text here: "str" (NaN for missing) on pandas 3, object before.
    text_dtype = pd.Series(["x"]).dtype
    out: dict[str, Any] = {}
    for column in COLUMNS:
        kind, value = column.kind, raw.get(column.name)
        if kind in ("text", "category", "json", "float", "provider"):
            items = _json_list(value, json_array=kind != "json")[flip]
            # fromiter never looks inside lists and dicts
            array = np.fromiter(items, dtype=object, count=n)
            if kind == "text":
                out[column.name] = pd.Series(array, dtype=text_dtype)
            elif kind == "category":
                out[column.name] = pd.Categorical(array)
            elif kind == "provider":
                out[column.name] = _providers(array)
            elif kind == "json":
                out[column.name] = pd.Series(array)
            else:
                out[column.name] = pd.Series(array.astype(np.float64))  # None → NaN
        elif kind == "time":
            out[column.name] = _stamps(value, n, flip)
    out.update(_unpack(raw, flip))
    for column in COLUMNS:
        if column.kind == "seconds":
            end, start = column.source.split()
            out[column.name] = (out[end] - out[start]).dt.total_seconds()
    return out


def _unpack(raw: dict[str, Any], flip: slice) -> dict[str, pd.Series | pd.Categorical]:
    """The packed columns (see :func:`_words`), by name."""
    import numpy as np
    import pandas as pd

    out: dict[str, Any] = {}
    for k, word in enumerate(_WORDS):
        text = raw.get(f"packed{k}")
        packed = (np.fromstring(text, dtype=np.int64, sep=",") if text
                  else np.zeros(0, dtype=np.int64))[flip]
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


def _stamps(text: str | None, n: int, flip: slice) -> pd.Series:
    """A time column from its stamps joined by the unit separator (NULL as :data:`_NO_STAMP`)."""
    import numpy as np
    import pandas as pd

    width, bare = _STAMP_WIDTH, _STAMP_WIDTH - len(_UTC_SUFFIX)
    data = (text or "").encode("ascii", "replace") + _UNIT_SEPARATOR.encode()
    stamps = None
    if n and len(data) == n * (width + 1):  # what the store writes: cut and parse in numpy
        table = np.frombuffer(data, dtype=np.uint8).reshape(n, width + 1)
        if (table[:, bare:width] == np.frombuffer(_UTC_SUFFIX, np.uint8)).all():
            head = np.ascontiguousarray(table[:, :bare])
            try:
                stamps = head.view(f"S{bare}").ravel().astype("datetime64[us]")
            except ValueError:
                stamps = None
    if stamps is None:  # rows written by hand in another form: let pandas cope, row by row
        values = pd.Series((text or "").split(_UNIT_SEPARATOR) if n else [], dtype=object)
        values = values.where(values != _NO_STAMP, None)
        stamps = (pd.to_datetime(values, format="ISO8601", utc=True).dt.tz_localize(None)
                  .to_numpy(dtype="datetime64[us]"))
    stamps = stamps[flip].copy()
    stamps[stamps == np.datetime64(_NO_STAMP[:bare], "us")] = np.datetime64("NaT")
    return pd.Series(stamps.astype("datetime64[ns]")).dt.tz_localize("UTC")
