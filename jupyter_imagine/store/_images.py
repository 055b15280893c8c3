"""The content-addressed image cache: a local folder, and optionally a shared one on any
fsspec URL that every machine of a team writes to and reads from.

An image's address is the SHA-256 of its bytes exactly as downloaded: it lives at
``<folder>/<2 hex>/<62 hex>.<ext>`` locally and at ``<shared>/<2 hex>/<62 hex>.<ext>`` in the
shared store (``JUPYTER_IMAGINE_IMAGES``, see :func:`jupyter_imagine._config.images_url`).

* **Writing** (:meth:`ImageCache.put`): the local file first, always (a temporary file in the
  same folder moved into place with :func:`os.replace`); then, when shared, the same bytes to the
  shared store if they are not there yet. Content addressing makes concurrent writers safe: the
  same name always holds the same image, so whoever lands last replaces a whole file with a
  whole file. On file systems that can rename, the shared copy is written under a temporary name
  and moved into place; object stores (S3, GCS, Azure …) make each PUT atomic by themselves,
  so they get one PUT. A shared store that cannot be written is no reason to fail a job: the
  local copy has landed, a warning is logged (once per cache, until the store works again), and
  the next :meth:`ImageCache.put` of the same image tries again.
* **Reading** (:meth:`ImageCache.local`): a stored path (maybe another machine's) becomes a file
  on this machine: the path itself if it exists, else the same address in the local folder,
  else — when shared — the shared copy fetched into the local folder (a read-through cache:
  the next read is local), else ``None`` (the image counts as missing; after a failure of the
  shared store, reads skip it for :data:`READ_PAUSE_S` seconds rather than wait on it for every
  image).

Paths of other machines are mapped by their address (the last two parts of the path), so a
record written on one machine reads on any other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .._secrets import get_logger, redact, register
from ..errors import ConfigurationError, InvalidRequest
from ..imaging import image_format

__all__ = ["ImageCache", "address_of", "clean_ext", "detect_ext"]

log = get_logger(__name__)

_EXT = re.compile(r"^[a-z0-9]{1,10}$")
#: The content address at the end of a cache path (either separator): ``ab/cdef….png``.
_ADDRESS = re.compile(r"(?:^|[/\\])([0-9a-f]{2})[/\\]([0-9a-f]{62}\.[a-z0-9]{1,10})$")
#: fsspec protocols of object stores: a PUT is atomic there (no rename, no folders).
OBJECT_STORES = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "r2", "memory"}
)
#: Seconds reads skip the shared store after it failed (the images count as missing meanwhile).
READ_PAUSE_S = 30.0
_INSTALL = "pip install 'jupyter_imagine[shared-images]'"


def detect_ext(data: bytes) -> str:
    """``png``, ``jpg``, ``webp`` or ``gif`` from the magic bytes, else ``bin``."""
    found = image_format(data)
    return "bin" if found is None else clean_ext(found)


def clean_ext(ext: str) -> str:
    """``ext`` lower-case without its dot (``jpeg`` → ``jpg``, ``tif`` → ``tiff``).

    Raises:
        InvalidRequest: anything but 1–10 letters and digits.
    """
    clean = str(ext).strip().lower().lstrip(".")
    clean = {"jpeg": "jpg", "tif": "tiff"}.get(clean, clean)
    if not _EXT.match(clean):
        raise InvalidRequest(f"file extension must be letters and digits, like 'png', not {ext!r}")
    return clean


def address_of(path: str | os.PathLike[str]) -> str | None:
    """The content address ``ab/cdef….ext`` at the end of ``path`` (any machine's, ``/`` or
    ``\\``), else ``None`` (not a file of an image cache)."""
    found = _ADDRESS.search(os.fspath(path))
    return f"{found.group(1)}/{found.group(2)}" if found else None


def write_file(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, flushed to
    disk, moved into place with :func:`os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def safe_url(url: str) -> str:
    """``url`` without the user and password it may carry (what messages and logs show)."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
        return urlunsplit(parts)
    return url


def check_shared(url: str) -> None:
    """Check that the shared image store at ``url`` can be opened here: fsspec and the backend
    of ``url``'s protocol are installed (nothing is connected yet: a store that is down is no
    configuration error, see :meth:`ImageCache.put`).

    Raises:
        ConfigurationError: fsspec, or the backend package of ``url``'s protocol, is not
            installed, or the protocol is unknown (one line naming the ``pip install``).
    """
    shown = safe_url(url)
    try:
        import fsspec
    except ImportError:
        raise ConfigurationError(
            f"JUPYTER_IMAGINE_IMAGES={shown} needs fsspec: {_INSTALL} (or unset "
            "JUPYTER_IMAGINE_IMAGES to keep images in the local folder only)"
        ) from None
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        raise ConfigurationError(
            f"JUPYTER_IMAGINE_IMAGES={shown} needs the fsspec backend for {protocol}://: "
            f"pip install {_backend_package(protocol)}"
        ) from None
    except ValueError:
        raise ConfigurationError(
            f"JUPYTER_IMAGINE_IMAGES={shown}: fsspec knows no protocol {protocol!r}; use a "
            "folder, file://…, s3://bucket/prefix (s3fs) or gcs://bucket/prefix (gcsfs)"
        ) from None


def _backend_package(protocol: str) -> str:
    """The package that implements fsspec's ``protocol`` (``s3`` → ``s3fs``)."""
    try:
        from fsspec.registry import known_implementations
    except ImportError:  # pragma: no cover - fsspec without its registry
        return f"the fsspec backend for {protocol}"
    known = known_implementations.get(protocol, {})
    return str(known.get("class", protocol)).split(".", 1)[0]


class ImageCache:
    """Image files by content address in ``folder``, and in a shared store when ``shared``.

    Args:
        folder: the local cache (created if missing).
        shared: an fsspec URL or a folder every machine can reach (``file:///shared/imagine``,
            ``s3://bucket/prefix``, ``/mnt/team/imagine``), default ``None``: local only.

    Raises:
        ConfigurationError: ``shared`` needs fsspec or a backend that is not installed.

    Thread-safe (no state but the warned-once flags).
    """

    def __init__(self, folder: str | os.PathLike[str], shared: str | None = None) -> None:
        self.folder = Path(folder)
        self.shared = safe_url(shared) if shared else None
        self._url = shared or None
        if shared:
            register(urlsplit(shared).password)  # never in a message or a log line
            check_shared(shared)
        self._opened: tuple[Any, str, bool] | None = None
        self._warned: set[str] = set()
        self._reads_resume = 0.0  # monotonic time before which reads skip a failing store
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        shared = f" shared={self.shared!r}" if self.shared else ""
        return f"<ImageCache {str(self.folder)!r}{shared}>"

    def _open(self) -> tuple[Any, str, bool]:
        """The shared store's fsspec file system, its root path, and whether it is an object
        store; opened on first use (a backend may connect then), again after a failure."""
        with self._lock:
            if self._opened is None:
                import fsspec

                fs, root = fsspec.core.url_to_fs(self._url)
                protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
                objects = bool(OBJECT_STORES.intersection(protocols))
                self._opened = (fs, str(root).rstrip("/"), objects)
            return self._opened

    # ----------------------------------------------------------------- writing
    def address(self, data: bytes, ext: str) -> Path:
        """Where ``data`` lives in the local folder: ``<folder>/<2 hex>/<62 hex>.<ext>``."""
        digest = hashlib.sha256(data).hexdigest()
        return self.folder / digest[:2] / f"{digest[2:]}.{ext}"

    def put(
        self, data: bytes, ext: str | None = None, text: Mapping[str, str] | None = None
    ) -> Path:
        """Store ``data`` once by its address and return the local file.

        Args:
            data: the bytes exactly as downloaded (their SHA-256 is the address).
            ext: file extension, default ``None``: detected from the magic bytes (``png``,
                ``jpg``, ``webp``, ``gif``, else ``bin``).
            text: PNG text chunks to add (prompt, parameters …), default none; secrets are
                redacted; ignored for other formats.

        A local file already there is kept untouched; the shared copy is written if absent
        (see the module docstring). Raises ``OSError`` only for the local folder.
        """
        data = bytes(data)
        ext = detect_ext(data) if ext is None else clean_ext(ext)
        path = self.address(data, ext)
        if not path.exists():
            payload = data
            if text and ext == "png":
                from ..imaging import png_with_text

                chunks = {redact(str(k)): redact(str(v)) for k, v in text.items()
                          if v is not None}
                payload = png_with_text(data, chunks)
            write_file(path, payload)
        if self._url is not None:
            self._share(path)
        return path

    def _share(self, path: Path) -> None:
        """Copy the local file ``path`` to the shared store unless it is there already."""
        relative = address_of(path)
        assert relative is not None
        try:
            fs, root, object_store = self._open()
            target = f"{root}/{relative}"
            if fs.exists(target):
                return
            payload = path.read_bytes()
            if object_store:
                fs.pipe_file(target, payload)
            else:
                fs.makedirs(f"{root}/{relative[:2]}", exist_ok=True)
                tmp = f"{root}/{relative[:2]}/.tmp-{uuid.uuid4().hex}-{relative[3:]}"
                try:
                    fs.pipe_file(tmp, payload)
                    fs.mv(tmp, target)
                except BaseException:
                    with contextlib.suppress(Exception):
                        fs.rm_file(tmp)
                    raise
        except Exception as exc:  # any backend's failure: keep the local copy
            self._warn("put", "could not write image %s to the shared store %s (%s); kept it "
                       "in %s only", relative, self.shared, _reason(exc), self.folder)
            return
        self._recovered("put")

    # ----------------------------------------------------------------- reading
    def local(self, path: str | os.PathLike[str] | None) -> Path | None:
        """A stored image path as an existing file on this machine, else ``None``.

        Tried in order: ``path`` itself; the same content address in the local folder; (shared)
        the shared copy, fetched into the local folder (so the next read stays local).
        """
        if not path:
            return None
        given = Path(path)
        if given.is_file():
            return given
        relative = address_of(path)
        if relative is None:
            return None
        mine = self.folder / relative
        if mine.is_file():
            return mine
        return self._fetch(relative, mine) if self._url is not None else None

    def _fetch(self, relative: str, mine: Path) -> Path | None:
        if time.monotonic() < self._reads_resume:
            return None  # it failed moments ago: do not wait on it for every image
        try:
            fs, root, _ = self._open()
            payload = fs.cat_file(f"{root}/{relative}")
        except FileNotFoundError:
            return None
        except Exception as exc:  # any backend's failure: the image is missing
            self._reads_resume = time.monotonic() + READ_PAUSE_S
            self._warn("read", "could not read image %s from the shared store %s (%s); it "
                       "counts as missing", relative, self.shared, _reason(exc))
            return None
        self._recovered("read")
        if not payload:
            return None
        try:
            write_file(mine, payload)
        except OSError as exc:
            log.warning("could not keep image %s in %s: %s", relative, self.folder, exc)
            return None
        return mine

    def here_json(self, text: str) -> str:
        """``text`` (JSON holding image paths, such as the history frame's ``image_paths``
        aggregate) with every other folder's content address mapped onto the local folder,
        cheaply: no file is checked or fetched.

        One pass per other folder (one per teammate's machine): find a path of that folder,
        then replace its folder everywhere at once. Paths that are not content addresses stay
        as they are.
        """
        local = json.dumps(str(self.folder) + os.sep, ensure_ascii=False)[1:-1]
        quoted = '"' + local
        foreign = re.compile(
            '"(?!' + re.escape(local) + r')((?:[^"\\]|\\.)*?(?:/|\\\\))'
            r'[0-9a-f]{2}(?:/|\\\\)[0-9a-f]{62}\.[a-z0-9]{1,10}"'
        )
        at = 0
        # Every string is one of ours (an escaped quote only makes this false: then search).
        while text.count('"') != 2 * text.count(quoted):
            found = foreign.search(text, at)
            if found is None:
                break
            folder = found.group(1)
            if len(folder) < 2:  # a path right below the root: never replace every "/…
                at = found.end()
                continue
            text = text.replace('"' + folder, quoted)
            at = found.start()
        return text

    # ----------------------------------------------------------------- warnings
    def _warn(self, what: str, message: str, *args: Any) -> None:
        """Log ``message`` as a warning the first time ``what`` fails, then at debug level."""
        with self._lock:
            first = what not in self._warned
            self._warned.add(what)
        log.log(30 if first else 10, message, *args)

    def _recovered(self, what: str) -> None:
        if what in self._warned:
            with self._lock:
                self._warned.discard(what)
            log.info("the shared image store %s works again (%s)", self.shared, what)


def _reason(exc: BaseException) -> str:
    """One line about ``exc`` without secrets."""
    return redact(f"{type(exc).__name__}: {exc}".splitlines()[0])[:300]
