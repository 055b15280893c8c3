"""``df.imagine.spend()`` (jupyter_imagine._spend_frame): the figures checked by hand on a small
frame shaped like the history's."""

from __future__ import annotations

import pandas as pd
import pytest

import jupyter_imagine  # noqa: F401  (registers df.imagine)
from jupyter_imagine.errors import InvalidRequest

NA = float("nan")


@pytest.fixture
def frame() -> pd.DataFrame:
    """A grid (a1, 4), its reroll (a2, 4), an upscale of the reroll (a3, 2), a variation of
    the first grid that failed (a4, NA), a skybox (b1, 6 Blockade credits) and a neuroflash
    job of unknown cost; two users over two days."""
    rows = [
        ("apiframe", "a1", None, 4.0, "credits", "2026-12-01T10:00", "ann", "a harbour"),
        ("apiframe", "a2", "a1", 4.0, "credits", "2026-12-01T11:00", "ann", "a harbour"),
        ("apiframe", "a3", "a2", 2.0, "credits", "2026-12-02T09:00", "bob", "a harbour"),
        ("apiframe", "a4", "a1", NA, None, "2026-12-02T09:30", "bob", "a harbour"),
        ("blockade", "b1", None, 6.0, "credits", "2026-12-02T12:00", "ann", "a cave"),
        ("neuroflash", "n1", None, NA, None, "2026-12-01T23:59", "bob", "a fox"),
    ]
    df = pd.DataFrame(rows, columns=["provider", "id", "parent_id", "cost", "cost_unit",
                                     "created_at", "user", "prompt"])
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    df["cost_unit"] = df["cost_unit"].astype("category")
    return df.set_index(["provider", "id"])


def as_records(df: pd.DataFrame) -> list[tuple]:
    return [tuple(None if isinstance(v, float) and pd.isna(v) else v for v in row)
            for row in df.itertuples(index=False)]


def test_spend_by_provider_keeps_units_apart_and_counts_unpriced_jobs(frame):
    got = frame.imagine.spend()
    assert list(got.columns) == ["provider", "unit", "jobs", "priced", "cost"]
    assert as_records(got) == [
        ("apiframe", "credits", 3, 3, 10.0),
        ("apiframe", "—", 1, 0, 0.0),
        ("blockade", "credits", 1, 1, 6.0),
        ("neuroflash", "—", 1, 0, 0.0),
    ]


def test_spend_by_day_uses_the_utc_date(frame):
    got = frame.imagine.spend(by="day")
    assert as_records(got[got["unit"] == "credits"]) == [
        ("2026-12-01", "apiframe", "credits", 2, 2, 8.0),
        ("2026-12-02", "apiframe", "credits", 1, 1, 2.0),
        ("2026-12-02", "blockade", "credits", 1, 1, 6.0),
    ]


def test_spend_by_user(frame):
    got = frame.imagine.spend(by="user")
    priced = got[got["priced"] > 0]
    assert as_records(priced) == [
        ("ann", "apiframe", "credits", 2, 2, 8.0),
        ("ann", "blockade", "credits", 1, 1, 6.0),
        ("bob", "apiframe", "credits", 1, 1, 2.0),
    ]
    with pytest.raises(InvalidRequest, match="needs a user column"):
        frame.drop(columns="user").imagine.spend(by="user")


def test_spend_by_lineage_sums_every_job_that_led_to_an_image(frame):
    got = frame.imagine.spend(by="lineage")
    by_id = got.set_index("id")
    assert by_id.loc["a3", "cost"] == 10.0  # upscale 2 + reroll 4 + the first grid 4
    assert by_id.loc["a3", "chain"] == ["a1", "a2", "a3"] and by_id.loc["a3", "steps"] == 3
    assert by_id.loc["a4", "cost"] == 4.0  # the failed variation adds nothing to its parent's
    assert by_id.loc["a1", "cost"] == 4.0 and by_id.loc["b1", "cost"] == 6.0
    assert pd.isna(by_id.loc["n1", "cost"])
    assert got["id"].tolist() == ["a3", "a2", "b1", "a1", "a4", "n1"]  # NA last
    # a slice without the ancestors counts only what it holds
    alone = frame.loc[[("apiframe", "a3")]].imagine.spend(by="lineage")
    assert alone["cost"].tolist() == [2.0] and alone["chain"].tolist() == [["a3"]]


def test_spend_refuses_a_frame_without_costs_and_an_unknown_grouping(frame):
    with pytest.raises(InvalidRequest, match="needs the columns cost"):
        frame.drop(columns=["cost"]).imagine.spend()
    with pytest.raises(InvalidRequest, match="'provider', 'day', 'user' or 'lineage'"):
        frame.imagine.spend(by="week")
