"""The sums behind ``df.imagine.spend()``: cost per provider/day/user, and per lineage.

Costs are summed per provider **and unit** only: a credit of one provider and a fast second of
another are never added up. A row without a known cost (NA) is counted in ``jobs`` and adds
nothing, so ``priced`` says how much of the total is known.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .errors import InvalidRequest

__all__ = ["lineage_spend", "spend_by"]


def spend_by(rows: pd.DataFrame, by: str) -> pd.DataFrame:
    """``jobs``, ``priced`` and ``cost`` per ``by`` (``provider``, ``day`` or ``user``) and
    provider and unit; ``rows`` has plain ``provider``, ``cost``, ``cost_unit`` columns (and
    ``created_at`` for ``day``, ``user`` for ``user``)."""
    frame = pd.DataFrame({
        "provider": rows["provider"].astype(str),
        "unit": rows["cost_unit"].astype(object).where(rows["cost_unit"].notna(), "—"),
        "cost": pd.to_numeric(rows["cost"], errors="coerce"),
    })
    keys = ["provider", "unit"]
    if by == "day":
        if "created_at" not in rows.columns:
            raise InvalidRequest("spend(by='day') needs the created_at column")
        stamps = pd.to_datetime(rows["created_at"], utc=True)
        frame.insert(0, "day", stamps.dt.strftime("%Y-%m-%d").to_numpy())
        keys = ["day", *keys]
    elif by == "user":
        if "user" not in rows.columns:
            raise InvalidRequest("spend(by='user') needs a user column (histories written "
                                 "before jobs recorded their user have none)")
        frame.insert(0, "user", rows["user"].astype(object).where(rows["user"].notna(), "—")
                     .to_numpy())
        keys = ["user", *keys]
    grouped = frame.groupby(keys, sort=True, dropna=False)["cost"]
    out = pd.DataFrame({"jobs": grouped.size(), "priced": grouped.count(),
                        "cost": grouped.sum(min_count=0)}).reset_index()
    return out


def lineage_spend(rows: pd.DataFrame) -> pd.DataFrame:
    """Per job of ``rows``: the cost of it and every ancestor in ``rows`` (``parent_id`` chain
    up to the root), most expensive first."""
    for name in ("id", "parent_id"):
        if name not in rows.columns:
            raise InvalidRequest(f"spend(by='lineage') needs the {name} column")
    ids = rows["id"].astype(str).tolist()
    parent = dict(zip(ids, rows["parent_id"].astype(object).where(rows["parent_id"].notna(),
                                                                   None), strict=True))
    cost = dict(zip(ids, pd.to_numeric(rows["cost"], errors="coerce"), strict=True))
    out: list[dict[str, Any]] = []
    for job_id, provider, prompt, unit in zip(
            ids, rows["provider"].astype(str), rows.get("prompt", pd.Series([None] * len(ids))),
            rows["cost_unit"].astype(object), strict=True):
        chain = _chain(job_id, parent)
        known = [cost[j] for j in chain if pd.notna(cost[j])]
        out.append({"provider": provider, "id": job_id, "prompt": prompt,
                    "unit": unit if pd.notna(unit) else None, "steps": len(chain),
                    "cost": float(sum(known)) if known else float("nan"), "chain": chain})
    frame = pd.DataFrame(out, columns=["provider", "id", "prompt", "unit", "steps", "cost",
                                       "chain"])
    return frame.sort_values("cost", ascending=False, na_position="last", kind="stable",
                             ignore_index=True)


def _chain(job_id: str, parent: dict[str, Any]) -> list[str]:
    """``job_id``'s ancestors in ``parent`` (root first) and itself; a cycle stops the walk."""
    chain = [job_id]
    current = parent.get(job_id)
    while current is not None and current in parent and current not in chain:
        chain.append(current)
        current = parent.get(current)
    return chain[::-1]
