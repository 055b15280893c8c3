"""The history schema: the same columns and dtypes for every provider's jobs (``_schema``).

Jobs run against the in-process sandbox.
"""

from __future__ import annotations

import contextlib
import time

import pandas as pd
import pytest

import jupyter_imagine as ji
from jupyter_imagine import _schema
from jupyter_imagine.providers import PROVIDERS
from jupyter_imagine.store import FRAME_COLUMNS

FAST = {"sandbox_speed": 1000.0, "backoff_base": 0.01, "backoff_cap": 0.2}

#: The dtype of every column, whatever the provider (str: pandas' default text dtype).
TEXT = str(pd.Series(["x"]).dtype)
EXPECTED_DTYPES = {
    "provider": "category", "id": TEXT, "remote_id": TEXT, "parent_id": TEXT,
    "root_id": TEXT, "kind": "category", "action": TEXT, "status": "category",
    "prompt": TEXT, "negative_prompt": TEXT, "params": "object",
    "created_at": "datetime64[ns, UTC]", "started_at": "datetime64[ns, UTC]",
    "completed_at": "datetime64[ns, UTC]", "queue_s": "float64", "run_s": "float64",
    "total_s": "float64", "n_images": "int64", "missing_images": "int64", "width": "Int64",
    "height": "Int64", "image_urls": "object", "image_paths": "object", "cost": "float64",
    "cost_unit": "category", "cost_source": "category", "error": TEXT, "user": "category",
    "host": "category", "sandbox": "bool",
}
#: A prompt and parameters that make one good job per provider (a fresh provider gets a default).
JOB_OF = {
    "apiframe": ("a lighthouse at dusk", {"aspect_ratio": "3:2"}),
    "thenextleg": ("a lighthouse at dusk --ar 3:2", {}),
    "blockade": ("a lighthouse on a cliff", {"negative_text": "fog"}),
    "neuroflash": ("a lighthouse at dusk", {"num_images": 2}),
    "banatie": ("a lighthouse at dusk", {"aspect_ratio": "16:9"}),
}


def no_empty_strings(df: pd.DataFrame) -> None:
    for name in df.columns:
        assert not (df[name].astype(object) == "").any(), f"empty string in {name}"


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# ------------------------------------------------------------------------------ one schema

def test_every_registered_provider_has_a_schema_case():
    assert set(PROVIDERS) <= set(JOB_OF), "add the new provider to JOB_OF"


def ids(frame: pd.DataFrame) -> list[str]:
    """The job ids of ``frame``'s rows, in order."""
    return frame.index.get_level_values("id").tolist()


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_schema_and_dtypes_are_the_same_for_every_provider(engine, provider):
    prompt, params = JOB_OF.get(provider, ("a lighthouse", {}))
    job = ji.imagine(prompt, provider=provider, **params).wait(30)
    failed = ji.imagine(f"{prompt} sandbox:fail", provider=provider)
    with contextlib.suppress(ji.JobFailed):
        failed.wait(30)
    df = ji.history(provider=provider)
    assert list(df.columns) == list(FRAME_COLUMNS)
    flat = df.reset_index()  # the key (provider, id) as columns: the same dtypes as the rest
    assert {c: str(t) for c, t in flat.dtypes.items()} == EXPECTED_DTYPES
    assert df.index.is_unique and list(df.index.names) == ["provider", "id"]
    assert set(df.index) == {(provider, job.id), (provider, failed.id)}
    assert list(flat["provider"].cat.categories) == sorted(_schema.KNOWN_PROVIDERS)
    no_empty_strings(df)
    row = df.loc[(provider, job.id)]
    assert row["status"] == "succeeded" and row["sandbox"]
    assert row["n_images"] >= 1 and len(row["image_paths"]) == row["n_images"]
    assert len(row["image_urls"]) == row["n_images"]
    assert row["width"] > 0 and row["height"] > 0
    assert row["remote_id"] == job.remote_id and row["root_id"] == job.id
    assert row["created_at"] <= row["started_at"] <= row["completed_at"]
    assert row["queue_s"] >= 0 and row["run_s"] >= 0
    assert row["total_s"] == pytest.approx(row["queue_s"] + row["run_s"])
    assert isinstance(row["params"], dict)
    if provider == "blockade":
        assert row["negative_prompt"] == "fog"
    if provider == "apiframe":
        assert (row["cost"], row["cost_unit"], row["cost_source"]) == (4.0, "credits", "prices")
    gone = df.loc[(provider, failed.id)]
    if gone["status"] == "failed":
        assert isinstance(gone["error"], str) and gone["error"]
        assert pd.isna(gone["width"]) and gone["image_paths"] == [] and pd.isna(gone["cost"])
        assert pd.isna(gone["completed_at"]) or gone["completed_at"] >= gone["created_at"]


def test_history_filters_query_and_raw(engine):
    a = ji.imagine("a red lighthouse", provider="apiframe").wait(60)
    b = ji.imagine("a green forest", provider="banatie").wait(60)
    assert ids(ji.history(query="LIGHTHOUSE")) == [a.id]
    assert ids(ji.history(provider=["banatie"])) == [b.id]
    assert ids(ji.history(status="succeeded", limit=1)) == [b.id]
    assert len(ji.history(since=a.created_at)) == 2
    assert ji.history(until=a.created_at).empty
    raw = ji.history(include_raw=True)
    assert raw["raw"].map(type).tolist() == [dict, dict]
    assert raw.loc[("apiframe", a.id), "raw"]["status"] == "finished"
    assert ji.history().loc["banatie"].index.tolist() == [b.id]  # one provider's rows
    keyed = ji.history(keys_as_columns=True)
    assert keyed["id"].tolist() == [b.id, a.id] and list(keyed.index.names) == [None, None]
    by_provider = keyed.groupby("provider", observed=True).size().to_dict()
    assert by_provider == {"apiframe": 1, "banatie": 1}
    pd.testing.assert_frame_equal(keyed.reset_index(drop=True), ji.history().reset_index())
    with pytest.raises(ji.ConfigurationError, match="unknown provider"):
        ji.history(provider="nope")


# ------------------------------------------------------------------------------ remote pulls
