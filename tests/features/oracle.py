"""The oracle for decremental encoders: compare a tracked, updated transformer with a refit.

``assert_same_fit`` compares every fitted attribute scikit-learn sets (recursively into nested
estimators): floats within 1e-9 relative (1e-12 absolute for values that are ~0), everything
else exactly, dtypes included. ``assert_same_output`` compares transforms (dense or sparse),
or that both raise the same exception type.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lester_dagster.features.decremental_base import fitted_attributes

RTOL = 1e-9
ATOL = 1e-12
CACHES = ("_stop_words_id",)

WORDS = ["bank", "account", "bad", "good", "service", "loan", "fee", "card", "late", "help"]
CATEGORIES = ["DE", "FR", "NL", "IT", "rare"]


def make_frame(n: int, seed: int) -> pd.DataFrame:
    """Mixed data as the frame produces it: float64 with NaN, int64, str with NaN, text."""
    rng = np.random.default_rng(seed)
    num = rng.normal(5.0, 10.0, n)
    num[rng.random(n) < 0.1] = np.nan
    cat = rng.choice(CATEGORIES[:4], n, p=[0.5, 0.3, 0.15, 0.05]).astype(object)
    cat[rng.random(n) < 0.05] = None
    cat[rng.integers(n)] = "rare"  # a category with exactly one member
    docs = []
    for _ in range(n):
        k = rng.integers(0, 6)
        docs.append(" ".join(rng.choice(WORDS, k, p=np.linspace(2, 0.2, len(WORDS)) / 11.0)))
    return pd.DataFrame(
        {
            "num": num,
            "int": rng.integers(0, 7, n),
            "wide": rng.lognormal(2.0, 1.0, n),
            "cat": pd.Series(cat, dtype="str"),
            "cat2": pd.Series(rng.choice(["x", "y"], n), dtype="str"),
            "text": pd.Series(docs, dtype="str"),
        }
    )


def delete_values(
    frame: pd.DataFrame, rows: Any, columns: list[str], text: str = ""
) -> pd.DataFrame:
    """The frame after a value deletion: the columns' values of ``rows`` become missing.

    Numbers become NaN (an int column turns float64, as pandas/the frame would), categories
    NaN, the text column ``text`` (the empty document).
    """
    out = frame.copy()
    for column in columns:
        if column == "text":
            out.loc[rows, column] = text
            continue
        if out[column].dtype.kind in "iub":
            out[column] = out[column].astype(np.float64)
        out.loc[rows, column] = np.nan
    return out


def _dense(x: Any) -> np.ndarray:
    if sp.issparse(x):
        x = x.toarray()
    return np.asarray(x)


def assert_close(ours: Any, ref: Any, where: str) -> None:
    """Recursive comparison of fitted state."""
    if ref is None or ours is None:
        assert ours is None and ref is None, f"{where}: {ours!r} != {ref!r}"
    elif hasattr(ref, "get_params") and not isinstance(ref, type):
        assert type(ours) is type(ref), where
        assert_same_fit(ours, ref, where + ".")
    elif isinstance(ref, np.ndarray | np.generic) and not isinstance(ref, np.dtype):
        ours_a, ref_a = np.asarray(ours), np.asarray(ref)
        assert isinstance(ours, np.ndarray | np.generic), f"{where}: {type(ours)} is not numpy"
        assert ours_a.dtype == ref_a.dtype, f"{where}: dtype {ours_a.dtype} != {ref_a.dtype}"
        assert ours_a.shape == ref_a.shape, f"{where}: shape {ours_a.shape} != {ref_a.shape}"
        if ref_a.dtype.kind == "O":
            for i, (x, y) in enumerate(zip(ours_a.ravel(), ref_a.ravel(), strict=True)):
                assert_close(x, y, f"{where}[{i}]")
        elif ref_a.dtype.kind in "fc":
            np.testing.assert_allclose(ours_a, ref_a, rtol=RTOL, atol=ATOL, err_msg=where)
        else:
            np.testing.assert_array_equal(ours_a, ref_a, err_msg=where)
    elif isinstance(ref, dict):
        assert isinstance(ours, dict), where
        assert ours.keys() == ref.keys(), f"{where}: keys differ: {set(ours) ^ set(ref)}"
        for key in ref:
            assert_close(ours[key], ref[key], f"{where}[{key!r}]")
    elif isinstance(ref, list | tuple):
        assert type(ours) is type(ref) and len(ours) == len(ref), where
        for i, (x, y) in enumerate(zip(ours, ref, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(ref, float) and isinstance(ours, numbers.Real):
        np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=ATOL, err_msg=where)
    else:
        assert ours == ref, f"{where}: {ours!r} != {ref!r}"


def assert_same_fit(ours: Any, ref: Any, where: str = "") -> None:
    """Every fitted attribute of ``ref`` (a refit) is on ``ours`` with the same value."""
    mine, theirs = fitted_attributes(ours), fitted_attributes(ref)
    for cache in CACHES:  # memoised by build_analyzer() on first use, not fitted state
        mine.pop(cache, None)
        theirs.pop(cache, None)
    assert mine.keys() == theirs.keys(), f"{where}attributes differ: {set(mine) ^ set(theirs)}"
    for name, value in theirs.items():
        assert_close(mine[name], value, where + name)


def _output(transformer: Any, X: Any) -> tuple[str, Any]:
    try:
        return "ok", transformer.transform(X)
    except Exception as err:  # both must fail alike
        return "error", type(err)


def assert_same_output(ours: Any, ref: Any, X: Any) -> None:
    (kind_a, a), (kind_b, b) = _output(ours, X), _output(ref, X)
    assert kind_a == kind_b, f"transform: ours {kind_a} ({a}), refit {kind_b} ({b})"
    if kind_a == "error":
        assert a is b
        return
    a, b = _dense(a), _dense(b)
    assert a.shape == b.shape, f"output shape {a.shape} != {b.shape}"
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    else:
        np.testing.assert_array_equal(a, b)


def feature_names(transformer: Any) -> list[str] | None:
    try:
        return [str(n) for n in transformer.get_feature_names_out()]
    except Exception:
        return None
