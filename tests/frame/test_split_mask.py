"""split_mask: the split of Frame.split computed from stored provenance alone, exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lester_dagster.frame as lf
from lester_dagster.errors import PlanError, UnknownSourceError, UnsupportedOperationError
from lester_dagster.frame import Prov, col, from_pandas, split_mask


def _frames(n: int = 500) -> tuple[lf.Frame, lf.Frame]:
    customers = pd.DataFrame({"cid": np.arange(n) * 3 + 1, "country": ["DE", "FR"] * (n // 2)})
    mails = pd.DataFrame(
        {"mid": np.arange(2 * n), "cid": np.repeat(customers["cid"].to_numpy(), 2)}
    )
    return from_pandas(customers, name="customers", key="cid"), from_pandas(
        mails, name="mails", key="mid"
    )


@pytest.mark.parametrize(("by", "fraction", "seed"), [("customers", 0.2, 0), ("mails", 0.35, 9)])
def test_split_mask_agrees_exactly_with_frame_split(by: str, fraction: float, seed: int) -> None:
    customers, mails = _frames()
    prepared = mails.join(customers.filter(col("country") == "DE"), on="cid")
    train, test = prepared.split(by=by, test_fraction=fraction, seed=seed)
    whole, a, b = lf.execute(prepared, train, test)
    mask = split_mask(whole.prov, by, fraction, seed)
    rows = whole.to_pandas()
    assert rows[mask].reset_index(drop=True).equals(b.to_pandas())
    assert rows[~mask].reset_index(drop=True).equals(a.to_pandas())
    assert 0 < mask.sum() < len(mask)


def test_split_mask_depends_on_the_key_and_seed_only() -> None:
    ids = np.arange(1, 1001, dtype=np.uint64)
    full = split_mask(Prov.of_source("s", ids), "s", 0.3, 4)
    part = split_mask(Prov.of_source("s", ids[::3]), "s", 0.3, 4)
    assert np.array_equal(full[::3], part)  # deleting records moves no other record
    assert not np.array_equal(full, split_mask(Prov.of_source("s", ids), "s", 0.3, 5))
    assert abs(full.mean() - 0.3) < 0.06


def test_split_mask_errors_say_what_to_do() -> None:
    prov = Prov.of_source("s", np.arange(1, 5, dtype=np.uint64))
    with pytest.raises(UnknownSourceError, match="'t'"):
        split_mask(prov, "t", 0.2, 0)
    with pytest.raises(PlanError, match="strictly between 0 and 1"):
        split_mask(prov, "s", 1.0, 0)
    absent = Prov(3, {"s": np.array([1, 0, 2], dtype=np.uint64)})
    with pytest.raises(PlanError, match="1 row"):
        split_mask(absent, "s", 0.2, 0)
    grouped = prov.group(np.array([0, 0, 1, 1]), 2)
    with pytest.raises(UnsupportedOperationError, match="split before group_by"):
        split_mask(grouped, "s", 0.2, 0)
