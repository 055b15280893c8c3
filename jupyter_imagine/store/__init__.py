"""The history of every job and the image cache, on one of two backends.

* :class:`Store` (:mod:`._sqlite`): the personal history, one SQLite file under
  ``JUPYTER_IMAGINE_HOME``. The default; nothing to set up.
* ``PostgresStore`` (:mod:`._postgres`): the team store, one PostgreSQL database that every
  notebook of a team writes to and reads from, chosen with
  ``JUPYTER_IMAGINE_STORE=postgresql://user@host/db``. Needs ``pip install
  jupyter_imagine[postgres]`` (psycopg 3).

Both have the same methods, schema, history frame, leases and guarantees; :func:`open_store`
picks one. Images live in :class:`~._images.ImageCache`: a local folder under
``JUPYTER_IMAGINE_HOME`` and, with ``JUPYTER_IMAGINE_IMAGES`` (any fsspec URL; ``pip install
jupyter_imagine[shared-images]``), a shared store every machine writes once and reads through.

``python -m jupyter_imagine.store migrate --to postgresql://…`` copies a personal history into a
team store.
"""

from __future__ import annotations

import os
import re
from typing import Any

from .._config import TEAM_STORE_SCHEMES, store_url
from ..errors import ConfigurationError, StorageError
from ._images import ImageCache
from ._sqlite import FRAME_COLUMNS, SCHEMA_VERSION, STATUS_ORDER, Store, storage_error, to_utc

#: Anything that starts like a URL (``scheme://``), for :func:`_refuse_other_urls`.
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")

__all__ = [
    "FRAME_COLUMNS",
    "SCHEMA_VERSION",
    "STATUS_ORDER",
    "ImageCache",
    "Store",
    "open_store",
    "storage_error",
    "to_utc",
]


def open_store(
    target: str | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    images: str | None = None,
) -> Any:
    """The store for ``target``: a ``postgresql://`` URL opens the team store, a folder (default
    ``None``) the SQLite history there; any other URL is refused.

    Args:
        target: a URL or a folder; default ``None``: ``JUPYTER_IMAGINE_STORE`` if set, else the
            SQLite history under ``home``.
        home: the folder of the SQLite history and of the local image cache, default ``None``:
            :func:`jupyter_imagine._config.home`.
        images: the shared image store (a folder or an fsspec URL), default ``None``:
            ``JUPYTER_IMAGINE_IMAGES`` if set, else the local image cache only.

    Raises:
        ConfigurationError: a PostgreSQL URL, but psycopg is not installed; a URL of another
            kind (``mysql://``, ``file://``, SQLAlchemy's ``postgresql+psycopg://``); a shared
            image store, but fsspec (or its backend for the URL) is not installed.
        StorageError: the store cannot be opened (one line: what and how to fix it).
    """
    from_env = target is None
    if target is None:
        target = store_url()
    if target is not None and str(target).startswith(TEAM_STORE_SCHEMES):
        try:
            from ._postgres import PostgresStore
        except ImportError:
            raise ConfigurationError(
                "the team store on PostgreSQL needs psycopg: pip install "
                f"'jupyter_imagine[postgres]'{_FROM_ENV if from_env else ''}"
            ) from None
        try:
            return PostgresStore(str(target), home=home, images=images)
        except StorageError as exc:
            if not from_env:
                raise
            raise StorageError(exc.message + _FROM_ENV, path=exc.path) from None
    if target is not None:
        _refuse_other_urls(str(target))
    return Store(target if target is not None else home, images=images)


#: What a team store from ``JUPYTER_IMAGINE_STORE`` that cannot be used may do instead.
_FROM_ENV = ", or unset JUPYTER_IMAGINE_STORE for the personal SQLite history"


def _refuse_other_urls(target: str) -> None:
    """Raise :class:`ConfigurationError` if ``target`` is a URL of another kind than the team
    store's, so it never becomes a SQLite history in a folder named like the URL. The message
    names only the URL's scheme (a URL may carry a password)."""
    found = _URL_SCHEME.match(target)
    if found is None:
        return
    scheme = found.group(1)
    base, _, driver = scheme.lower().partition("+")
    hint = ""
    if f"{base}://" in TEAM_STORE_SCHEMES:
        hint = (f"drop '+{driver}' (SQLAlchemy's driver suffix): " if driver
                else "write the scheme in lower case: ")
    raise ConfigurationError(
        f"a store given as a {scheme}:// URL is not supported; {hint}the team store takes a "
        "postgresql://user@host/db URL, and a folder path opens a personal SQLite history"
    )
