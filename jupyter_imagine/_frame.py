"""The history frame: what the store's SELECT reads and how its rows become a typed DataFrame.

:data:`FRAME_SELECT` is the select list over the ``jobs`` table's indexed columns (and
:data:`RAW_SELECT` the payload for ``include_raw``); :func:`build` turns the rows of that query
into the frame documented on :func:`jupyter_imagine.history`. The store runs the query (with its
filters and order) and hands the rows over; nothing here touches the database. The column list
and the categories come from :mod:`jupyter_imagine._schema`.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._schema import HISTORY_COLUMNS, KNOWN_PROVIDERS, STATUS_ORDER
from ._secrets import scrub

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

__all__ = ["FRAME_SELECT", "RAW_SELECT", "build", "gc_paused"]

# What the frame reads, in this order: every value comes straight from the indexed columns, in
# the form that is cheapest to turn into pandas columns (see build). sqlite3 spends
# ~10-15 ms per result column per 100,000 rows whatever it holds, so columns travel together
# where that measured faster: the small numbers packed in one integer (status, known-provider
# code, sandbox, n_images, width, height; a NULL size is 0, sizes being positive) and the three
# timestamps in one fixed-width text (numpy splits and parses them; "+00:00" is dropped, a NULL
# is a sentinel date). A provider outside KNOWN_PROVIDERS (rare) comes as "provider<US>id" in
# the id column. (One JSON text for params, urls and paths measured slower than three columns,
# and packing the kind as a code gained nothing.)
_STATUS_BITS, _PROVIDER_BITS, _SANDBOX_BITS, _COUNT_BITS, _SIZE_BITS = 3, 4, 1, 12, 20
_OTHER_PROVIDER = (1 << _PROVIDER_BITS) - 1
_UNIT_SEPARATOR = "\x1f"
_STAMP_WIDTH = 26  # "YYYY-MM-DDTHH:MM:SS.ffffff"
_NO_STAMP = "0001-01-01T00:00:00.000000"  # stands for NULL (no job is that old)


def _codes(column: str, names: Sequence[str], *, other: str) -> str:
    whens = " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(names))
    return f"CASE {column} {whens} ELSE {other} END"


def _pack() -> str:
    parts, shift = [], 0
    for expr, bits in (
        (_codes("status", STATUS_ORDER, other="0"), _STATUS_BITS),
        (_codes("provider", KNOWN_PROVIDERS, other=str(_OTHER_PROVIDER)), _PROVIDER_BITS),
        ("sandbox", _SANDBOX_BITS),
        (f"min(n_images, {(1 << _COUNT_BITS) - 1})", _COUNT_BITS),
        (f"IFNULL(min(width, {(1 << _SIZE_BITS) - 1}), 0)", _SIZE_BITS),
        (f"IFNULL(min(height, {(1 << _SIZE_BITS) - 1}), 0)", _SIZE_BITS),
    ):
        parts.append(f"(({expr}) << {shift})" if shift else f"({expr})")
        shift += bits
    return " | ".join(parts)


def _stamp(column: str) -> str:
    return f"IFNULL(substr({column}, 1, {_STAMP_WIDTH}), '{_NO_STAMP}')"


_KNOWN_SQL = ", ".join(f"'{name}'" for name in KNOWN_PROVIDERS)
_FRAME_SOURCE: tuple[tuple[str, str], ...] = (
    (
        "id",
        f"CASE WHEN provider IN ({_KNOWN_SQL}) THEN id "
        f"ELSE provider || char({ord(_UNIT_SEPARATOR)}) || id END",
    ),
    ("remote_id", "remote_id"),
    ("parent_id", "parent_id"),
    ("root_id", "root_id"),
    ("kind", "kind"),
    ("action", "action"),
    ("prompt", "prompt"),
    ("negative_prompt", "negative_prompt"),
    ("params", "params"),
    ("urls", "urls"),
    ("paths", "paths"),
    ("credits", "credits"),
    ("times", " || ".join(_stamp(c) for c in ("created_at", "started_at", "completed_at"))),
    ("error", "error"),
    ("packed", _pack()),
)
_FRAME_NAMES = tuple(name for name, _ in _FRAME_SOURCE)
FRAME_SELECT = ", ".join(sql for _, sql in _FRAME_SOURCE)
# With include_raw: the payload as JSON text, extracted by SQLite (no Python parse of records).
RAW_SELECT = "json_extract(record, '$.raw')"




@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while a large result becomes a frame.

    A 100,000-row history is ~1.5 million fresh Python objects; left on, the collector walks
    them repeatedly and more than doubles the time. Nothing built here forms cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build(
    rows: list[tuple[Any, ...]], *, ordered: bool, include_raw: bool = False
) -> pd.DataFrame:
    """The frame from rows of :data:`FRAME_SELECT` (plus the raw payload if ``include_raw``).

    ``ordered=False``: rows come newest-*saved* first (table order); they are re-sorted newest
    first by ``created_at`` (ties: last saved first) unless they already are.
    """
    import numpy as np
    import pandas as pd

    names = _FRAME_NAMES + (("raw",) if include_raw else ())
    n = len(rows)
    columns = list(zip(*rows, strict=True)) if n else [() for _ in names]
    col = dict(zip(names, columns, strict=True))
    # pandas' default for text in this version/configuration: "str" (NaN for missing) on
    # pandas 3, object (None for missing) before.
    text_dtype = pd.Series(["x"]).dtype

    def objects(values: Any) -> np.ndarray:  # fromiter never looks inside lists and dicts
        return np.fromiter(values, dtype=object, count=n)

    def text(values: Any) -> pd.Series:  # ~2x faster from an object array than from a tuple
        return pd.Series(values if isinstance(values, np.ndarray) else objects(values),
                         dtype=text_dtype)

    fields = _unpack(np.fromiter(col["packed"], dtype=np.int64, count=n))
    ids = objects(col["id"])
    provider = _providers(ids, fields["provider"])
    status = pd.Categorical.from_codes(fields["status"].astype(np.int8),
                                       categories=list(STATUS_ORDER))

    # params, urls and paths: one JSON parse per column, not one per row.
    params, urls, paths = (json.loads("[" + ",".join(col[c]) + "]")
                           for c in ("params", "urls", "paths"))
    credits = np.array(col["credits"], dtype=np.float64)  # None becomes NaN

    # The three timestamps: one fixed-width text per row, split and parsed by numpy.
    created, started, completed = _stamps(col["times"], n)

    id_column = text(ids)
    data = {
        "provider": provider,
        "id": id_column,
        "remote_id": text(col["remote_id"]),
        "parent_id": text(col["parent_id"]),
        "root_id": text(col["root_id"]),
        "kind": pd.Categorical(objects(col["kind"])),
        "action": text(col["action"]),
        "status": status,
        "prompt": text(col["prompt"]),
        "negative_prompt": text(col["negative_prompt"]),
        "params": pd.Series(objects(params)),
        "created_at": created,
        "started_at": started,
        "completed_at": completed,
        "queue_s": _seconds(started, created),
        "run_s": _seconds(completed, started),
        "total_s": _seconds(completed, created),
        "n_images": pd.Series(fields["n_images"]),
        "width": _pixels(fields["width"]),
        "height": _pixels(fields["height"]),
        "image_urls": pd.Series(objects(urls)),
        "image_paths": pd.Series(objects(paths)),
        "credits": pd.Series(credits),
        "error": text(col["error"]),
        "sandbox": pd.Series(fields["sandbox"].astype(bool)),
    }
    if include_raw:
        raw = json.loads("[" + ",".join(v or "null" for v in col["raw"]) + "]")
        data["raw"] = pd.Series([scrub(r) if r is not None else {} for r in raw], dtype=object)
    # Fresh arrays, nothing shared: no copy needed.
    frame = pd.DataFrame(
        data, columns=[*HISTORY_COLUMNS, *(["raw"] if include_raw else [])], copy=False
    )
    return _keyed(frame, provider, id_column, created, ordered=ordered)


def _seconds(end: pd.Series, start: pd.Series) -> pd.Series:
    return (end - start).dt.total_seconds()


def _pixels(values: np.ndarray) -> pd.Series:
    """An Int64 column of sizes (0 stands for NA)."""
    import pandas as pd

    return pd.Series(pd.arrays.IntegerArray(values, values == 0))


def _unpack(packed: np.ndarray) -> dict[str, np.ndarray]:
    """The small numbers of the ``packed`` column (see :func:`_pack`), by name."""
    fields: dict[str, np.ndarray] = {}
    shift = 0
    for name, bits in (("status", _STATUS_BITS), ("provider", _PROVIDER_BITS),
                       ("sandbox", _SANDBOX_BITS), ("n_images", _COUNT_BITS),
                       ("width", _SIZE_BITS), ("height", _SIZE_BITS)):
        fields[name] = (packed >> shift) & ((1 << bits) - 1)
        shift += bits
    return fields


def _providers(ids: np.ndarray, codes: np.ndarray) -> pd.Categorical:
    """The provider column: known providers by code; any other one is in its id, which is
    cut back to the bare id in place."""
    import numpy as np
    import pandas as pd

    other = codes == _OTHER_PROVIDER
    if not other.any():
        return pd.Categorical.from_codes(codes.astype(np.int16), categories=list(KNOWN_PROVIDERS))
    # rare: a provider outside KNOWN_PROVIDERS (a test double, a plug-in)
    split = [str(v).split(_UNIT_SEPARATOR, 1) for v in ids[other]]
    ids[other] = [pair[1] for pair in split]
    lookup = [*KNOWN_PROVIDERS, *[""] * ((1 << _PROVIDER_BITS) - len(KNOWN_PROVIDERS))]
    values = np.array(lookup, dtype=object)[codes]
    values[other] = [pair[0] for pair in split]
    return pd.Categorical(values, categories=sorted(set(KNOWN_PROVIDERS).union(values)))


def _keyed(frame: pd.DataFrame, provider: pd.Categorical, id_column: pd.Series,
           created: pd.Series, *, ordered: bool) -> pd.DataFrame:
    """``frame`` with its (provider, id) index, newest first (see :func:`build`)."""
    import numpy as np
    import pandas as pd

    n = len(frame)
    # The key (provider, id), built from the provider codes and the id column without a new
    # string. The levels are unnamed: a level named like a column makes pandas refuse
    # df.groupby("provider") as ambiguous.
    frame.index = pd.MultiIndex(
        levels=[pd.Index(provider.categories), pd.Index(id_column)],
        codes=[provider.codes, np.arange(n)],
        verify_integrity=False,
    )
    if not ordered and n > 1:
        stamps = created.to_numpy(dtype="datetime64[ns]").view("int64")
        if (np.diff(stamps) > 0).any():
            # Primary key: created_at descending; ties keep table order (last saved first).
            order = np.lexsort((np.arange(n), -stamps))
            frame = frame.take(order)
    return frame


def _stamps(values: Sequence[str], n: int) -> tuple[pd.Series, pd.Series, pd.Series]:
    """created_at, started_at, completed_at from the rows' combined fixed-width texts."""
    import numpy as np
    import pandas as pd

    width = _STAMP_WIDTH
    try:
        # As bytes: numpy parses ASCII ~6x faster than its unicode strings.
        table = np.array(values, dtype=f"S{3 * width}").view(f"S{width}").reshape(n, 3)
        parsed = [table[:, k].astype("datetime64[us]") for k in range(3)]
        if any(len(v) != 3 * width for v in values[:1]):  # not what _utc_text writes
            raise ValueError(values[0])
    except ValueError:  # rows written by hand in another format: let pandas cope, row by row
        parts = [[v[k * width : (k + 1) * width] for v in values] for k in range(3)]
        parsed = [
            pd.to_datetime(pd.Series(p, dtype=object), format="ISO8601", utc=True)
            .dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
            for p in parts
        ]
    missing = np.datetime64(_NO_STAMP, "us")
    out = []
    for stamps in parsed:
        stamps[stamps == missing] = np.datetime64("NaT")
        out.append(pd.Series(stamps.astype("datetime64[ns]")).dt.tz_localize("UTC"))
    return out[0], out[1], out[2]
