"""``df.imagine``: the history frame's own methods, on any frame that has its key columns.

Registered on ``import jupyter_imagine``. It works on :func:`jupyter_imagine.history` frames,
on :func:`jupyter_imagine.batch` results and on any slice of them (``df[df.status ==
"failed"].imagine.jobs()``), as long as the key columns ``provider`` and ``id`` are there, as
columns or as index levels; otherwise accessing ``df.imagine`` raises ``AttributeError`` saying
so (pandas' convention for accessors).

========================= ==================================================================
``.jobs()``               the rows' :class:`~jupyter_imagine.models.Job` objects, re-attached
``.show(i=0)``            one job (its live view when displayed)
``.reroll(i, prompt=)``   run row ``i`` again (🔄 where the job offers it, else a new job with
                          the same prompt and parameters, linked to it)
``.gallery()``            the gallery widget over these rows
``.export(folder, fmt=)`` image files named ``<provider>_<id>[_<n>].<fmt>`` with the prompt and
                          parameters inside, plus ``history.csv`` (or ``.parquet``) of the rows
``.spend(by=)``           what the rows cost, per provider, day, user or lineage (in each
                          provider's own unit: units are never added up across)
========================= ==================================================================

A row is chosen by position (``0`` is the first row, negative counts from the end), by its key
``("apiframe", "3f2a…")`` (also written ``"apiframe:3f2a…"``), by index label, or by job id.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._display import Progress
from ._schema import check_frame
from ._secrets import get_logger, scrub
from .errors import InvalidRequest, StorageError

if TYPE_CHECKING:  # pragma: no cover
    from .models import Job

__all__ = ["ImagineAccessor"]

logger = get_logger(__name__)

#: Export formats: name → (file extension, Pillow format). ``original`` copies the bytes.
EXPORT_FORMATS: Mapping[str, tuple[str, str | None]] = {
    "png": ("png", "PNG"),
    "jpg": ("jpg", "JPEG"),
    "jpeg": ("jpg", "JPEG"),
    "webp": ("webp", "WEBP"),
    "original": ("", None),
}
#: Sidecar file name (without extension) written by :meth:`ImagineAccessor.export`.
SIDECAR = "history"
_EXIF_DESCRIPTION, _EXIF_SOFTWARE, _EXIF_USER_COMMENT = 0x010E, 0x0131, 0x9286


@pd.api.extensions.register_dataframe_accessor("imagine")
class ImagineAccessor:
    """``df.imagine``: gallery, show, reroll, export and jobs for history frames (see the module
    docstring)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        check_frame(frame, "df.imagine")
        self._frame = frame

    # ------------------------------------------------------------------ rows
    def _column(self, name: str) -> list[Any]:
        frame = self._frame
        if name in frame.columns:
            values = frame[name]
            if isinstance(values, pd.DataFrame):  # duplicated column names: the first
                values = values.iloc[:, 0]
            return list(values)
        return list(frame.index.get_level_values(name))

    def _keys(self) -> list[tuple[str, str]]:
        return list(zip(map(str, self._column("provider")), map(str, self._column("id")),
                        strict=True))

    def _position(self, i: int | str) -> int:
        n = len(self._frame)
        if isinstance(i, bool):
            raise InvalidRequest(f"choose a row by position, index label or job id, not {i!r}")
        if isinstance(i, int):
            if not -n <= i < n:
                raise InvalidRequest(f"row {i} is out of range: this frame has {n} rows")
            return i % n
        if isinstance(i, (str, tuple)):
            labels = list(self._frame.index)
            if i in labels:
                return labels.index(i)
            keys = self._keys()
            wanted = tuple(i.split(":", 1)) if isinstance(i, str) and ":" in i else i
            if wanted in keys:  # (provider, id), or "provider:id"
                return keys.index(wanted)  # type: ignore[arg-type]
            ids = [job_id for _, job_id in keys]
            if i in ids:
                return ids.index(i)  # type: ignore[arg-type]
            raise InvalidRequest(
                f"no row {i!r} in this frame (not an index label, a (provider, id) key or a "
                "job id)"
            )
        raise InvalidRequest(f"choose a row by position, index label or job id, not {i!r}")

    def _job(self, i: int | str) -> Job:
        from .api import get_engine

        return get_engine().get(self._keys()[self._position(i)][1])

    def jobs(self) -> list[Job]:
        """The rows' jobs, in row order, attached to the engine (an unfinished one resumes).

        Raises:
            NotFound: a row's job is not in this history (a frame from another home).
        """
        from .api import get_engine

        engine = get_engine()
        return [engine.get(job_id) for _, job_id in self._keys()]

    def show(self, i: int | str = 0) -> Job:
        """Row ``i``'s job (default the first row); displayed, it is the job's live view."""
        return self._job(i)

    def reroll(self, i: int | str = 0, prompt: str | None = None, **params: Any) -> Job:
        """Run row ``i``'s job again and return the new job (default: the first row).

        With 🔄 among the job's actions (Midjourney providers) that button is pressed, with
        ``prompt`` instead of the original if given. Otherwise a new job of the same provider
        starts with the row's prompt (or ``prompt``) and its parameters (``params`` override
        them), linked to the row's job as its parent so the lineage shows the reroll
        (:meth:`~jupyter_imagine.models.Job.reroll`).
        """
        return self._job(i).reroll(prompt=prompt, **params)

    def gallery(self) -> Any:
        """The gallery widget over these rows (:func:`jupyter_imagine.gallery`)."""
        from .widgets import gallery

        frame = self._frame
        if "id" not in frame.columns or "provider" not in frame.columns:
            frame = frame.reset_index()
        return gallery(frame)

    # ------------------------------------------------------------------ spend
    def spend(self, by: str = "provider") -> pd.DataFrame:
        """What these rows cost, summed in each provider's own unit (``cost``/``cost_unit``).

        Args:
            by: ``"provider"`` (default), ``"day"`` (UTC date of ``created_at``), ``"user"``
                (the ``user`` column) — each with ``provider`` and ``unit`` — or ``"lineage"``:
                one row per job with what it cost together with every job that led to it
                (its parent, the parent's parent … up to its root: the rerolls, variations and
                upscales it came from), most expensive first.

        Returns a frame with ``jobs`` (rows), ``priced`` (rows with a known cost) and ``cost``
        (their sum) per group; for ``lineage``: ``provider``, ``id``, ``prompt``, ``unit``,
        ``steps`` (jobs in the chain), ``cost`` (their sum) and ``chain`` (ids, root first).
        Rows with no known cost count in ``jobs`` but add nothing.
        """
        from ._spend_frame import lineage_spend, spend_by

        rows = self._spend_rows()
        if by == "lineage":
            return lineage_spend(rows)
        if by not in ("provider", "day", "user"):
            raise InvalidRequest(
                f"spend(by=...) is 'provider', 'day', 'user' or 'lineage', not {by!r}")
        return spend_by(rows, by)

    def _spend_rows(self) -> pd.DataFrame:
        frame = self._frame
        if any(name in frame.index.names for name in ("provider", "id")):
            frame = frame.reset_index()
        missing = [c for c in ("cost", "cost_unit") if c not in frame.columns]
        if missing:
            raise InvalidRequest(
                f"spend() needs the columns {', '.join(missing)}; use a frame from "
                "jupyter_imagine.history() (or a slice that keeps them)")
        return frame.loc[:, ~frame.columns.duplicated()]

    # ------------------------------------------------------------------ export
    def export(
        self, folder: str | os.PathLike[str], fmt: str = "png", *, sidecar: str = "csv",
        progress: bool = True,
    ) -> list[Path]:
        """Write the rows' images to ``folder`` (created if needed) and a sidecar of the rows.

        Args:
            folder: where to write.
            fmt: ``"png"`` (default), ``"jpg"``, ``"webp"``, or ``"original"`` (the cached
                bytes as downloaded).
            sidecar: ``"csv"`` (default) or ``"parquet"`` (needs pyarrow or fastparquet).
            progress: show rows written of all (default ``True``; a bar in a notebook, a text
                bar on stderr elsewhere); rows without a downloaded image count as failed (and
                are logged as warnings).

        Files are named ``<provider>_<id>.<ext>``, or ``<provider>_<id>_<n>.<ext>`` (n from 1)
        for jobs with several images. Each carries its prompt and parameters: PNG text chunks
        ``prompt`` and ``parameters`` (JSON: provider, kind, id, remote_id, parent_id, params,
        created_at); JPEG/WebP EXIF ImageDescription (the prompt) and UserComment (the JSON).
        The sidecar ``history.csv`` / ``history.parquet`` has one line per row with every
        column of the frame (lists and dicts as JSON text in CSV) plus ``files``, the names
        written for that row. Rows whose images were never downloaded get no files (logged).

        Returns:
            The image files written, in row order.
        """
        spec = EXPORT_FORMATS.get(str(fmt).lower().lstrip("."))
        if spec is None:
            raise InvalidRequest(
                f"fmt must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}"
            )
        if sidecar not in ("csv", "parquet"):
            raise InvalidRequest(f"sidecar must be 'csv' or 'parquet', not {sidecar!r}")
        target = Path(folder).expanduser()
        with _export_errors(target):
            target.mkdir(parents=True, exist_ok=True)
        frame = self._frame
        paths = self._column("image_paths") if "image_paths" in frame.columns else None
        written: list[Path] = []
        files_per_row: list[list[str]] = []
        keys = self._keys()
        missing = 0
        with _export_errors(target), Progress(
                f"export of {len(keys)} job{'' if len(keys) == 1 else 's'}", len(keys),
                enabled=progress) as bar:
            for pos, (provider, job_id) in enumerate(keys):
                sources = list(paths[pos]) if paths is not None and _is_list(paths[pos]) else None
                if sources is None:  # a frame without image_paths: ask the store
                    sources = [img.path for img in self._job(pos).images if img.path]
                names = self._export_row(pos, provider, job_id, sources, target, spec)
                written.extend(target / name for name in names)
                files_per_row.append(names)
                missing += not names
                bar.update(pos + 1, failed=missing)
            _write_sidecar(frame, files_per_row, target / f"{SIDECAR}.{sidecar}", sidecar)
        return written

    def _export_row(
        self, pos: int, provider: str, job_id: str, sources: list[Any], target: Path,
        spec: tuple[str, str | None],
    ) -> list[str]:
        """Write row ``pos``'s images; the names written."""
        meta = self._metadata(pos, provider, job_id)
        names = []
        for n, source in enumerate(sources, start=1):
            if not source or not Path(source).is_file():
                logger.warning("export: %s job %s image %d is not downloaded", provider,
                               job_id, n)
                continue
            stem = f"{_safe(provider)}_{_safe(job_id)}" + (f"_{n}" if len(sources) > 1 else "")
            names.append(_write_image(Path(source), target, stem, spec, meta).name)
        return names

    def _metadata(self, pos: int, provider: str, job_id: str) -> dict[str, str]:
        row = self._frame.iloc[pos]

        def get(name: str) -> Any:
            value = row.get(name) if name in row.index else None
            return None if _missing(value) else value

        created = get("created_at")
        parameters = {
            "provider": provider,
            "kind": get("kind"),
            "id": job_id,
            "remote_id": get("remote_id"),
            "parent_id": get("parent_id"),
            "params": get("params") or {},
            "created_at": created.isoformat() if hasattr(created, "isoformat") else created,
        }
        return {
            "prompt": str(get("prompt") or ""),
            "parameters": json.dumps(scrub(parameters), ensure_ascii=False, default=str),
            "Software": "jupyter_imagine",
        }


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return bool(pd.isna(value)) if not isinstance(value, (list, tuple, dict)) else False
    except (TypeError, ValueError):
        return False


def _safe(text: str) -> str:
    """``text`` usable in a file name on every OS."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text)) or "x"


def _write_image(
    source: Path, folder: Path, stem: str, spec: tuple[str, str | None], meta: Mapping[str, str]
) -> Path:
    from PIL import Image as PILImage
    from PIL import PngImagePlugin

    from .imaging import png_with_text

    ext, pil_format = spec
    data = source.read_bytes()
    if pil_format is None:  # original bytes
        out = folder / f"{stem}{source.suffix or '.bin'}"
        out.write_bytes(data)
        return out
    out = folder / f"{stem}.{ext}"
    if pil_format == "PNG" and data[:8] == b"\x89PNG\r\n\x1a\n":
        out.write_bytes(png_with_text(data, meta))  # same pixels, our text chunks
        return out
    with PILImage.open(source) as img:
        img.load()
        if pil_format == "PNG":
            info = PngImagePlugin.PngInfo()
            for key, value in meta.items():
                info.add_itxt(key, value)
            img.save(out, format="PNG", pnginfo=info)
            return out
        if img.mode not in ("RGB", "L") and pil_format == "JPEG":
            img = img.convert("RGB")
        exif = PILImage.Exif()
        exif[_EXIF_DESCRIPTION] = meta.get("prompt", "")
        exif[_EXIF_SOFTWARE] = meta.get("Software", "jupyter_imagine")
        exif[_EXIF_USER_COMMENT] = b"UNICODE\x00" + meta.get("parameters", "").encode("utf-16-be")
        img.save(out, format=pil_format, exif=exif, quality=95)
    return out


@contextlib.contextmanager
def _export_errors(target: Path) -> Iterator[None]:
    """Turn an ``OSError`` while exporting to ``target`` into one line saying what and how to fix
    it (:class:`~jupyter_imagine.errors.StorageError`)."""
    try:
        yield
    except OSError as exc:
        why = "it is a file, not a folder" if target.is_file() else (
            exc.strerror or type(exc).__name__)
        raise StorageError(
            f"cannot export to {target}: {why}; give a folder you can write to, with room for "
            "the images", path=str(target),
        ) from None


def _write_sidecar(
    frame: pd.DataFrame, files: list[list[str]], path: Path, kind: str
) -> None:
    out = frame.copy()
    out["files"] = files
    named = [n for n in out.index.names if n is not None and n not in out.columns]
    if named:  # an index that carries information the columns do not
        out = out.reset_index(level=named)
    if kind == "parquet":
        for name in out.columns:
            if out[name].dtype == object and out[name].map(lambda v: isinstance(v, dict)).any():
                out[name] = out[name].map(_to_json)  # parquet has no schemaless dicts
        try:
            out.to_parquet(path)
        except ImportError as exc:
            raise InvalidRequest(
                f"a Parquet sidecar needs pyarrow or fastparquet ({exc}); use sidecar='csv'"
            ) from None
        return
    for name in out.columns:
        if out[name].dtype == object:
            out[name] = out[name].map(
                lambda v: _to_json(v) if isinstance(v, (list, tuple, dict)) else v
            )
    out.to_csv(path, index=False)


def _to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
