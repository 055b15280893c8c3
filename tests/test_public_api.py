"""The public surface: ``jupyter_imagine.__all__`` is small, sorted, exported and documented."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import jupyter_imagine as ji
from jupyter_imagine import api

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_all_is_one_sorted_list_of_at_most_29_names():
    assert ji.__all__ == sorted(ji.__all__)
    assert len(ji.__all__) == len(set(ji.__all__)) <= 29


@pytest.mark.parametrize("name", ji.__all__)
def test_every_public_name_is_importable_documented_and_in_the_readme(name):
    obj = getattr(importlib.import_module("jupyter_imagine"), name)
    assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
    assert re.search(rf"\b{re.escape(name)}\b", README), f"README.md never mentions {name}"


def test_api_all_is_what_the_package_exports_from_it():
    from_api = {n for n in ji.__all__ if getattr(ji, n).__module__ == api.__name__}
    assert set(api.__all__) == from_api


def test_midjourney_verbs_moved_under_the_provider_client():
    for verb in ("account", "blend", "describe", "faceswap", "seed", "upscale"):
        assert verb not in ji.__all__ and not hasattr(ji, verb)
        assert verb in dir(ji.client("apiframe"))
    for verb in ("blend", "describe", "seed"):
        assert callable(getattr(ji.client("thenextleg"), verb))


def test_the_exception_tree_stays_importable():
    from jupyter_imagine import InvalidMask, JobCancelled, PermissionDenied  # not listed

    assert issubclass(InvalidMask, ji.InvalidRequest) and issubclass(JobCancelled, ji.JobFailed)
    assert issubclass(PermissionDenied, ji.ProviderError)
    assert issubclass(ji.StorageError, ji.ImagineError)
