"""The child side of :mod:`lester_dagster.rewrite.capture`: run a script, dump chosen globals.

Run as ``python -m lester_dagster.rewrite.runner SPEC.json`` (inside the sandbox). The spec
names the script, its arguments, the globals to capture and the output directory. The script
runs like ``python script.py ARGS`` (``__name__ == "__main__"``, its directory first on
``sys.path``); afterwards every requested global that exists is written by :func:`dump_values`
in a format the parent can read **without unpickling** (a pickle written by generated code
would run code in the parent):

* NumPy arrays (numbers, booleans, strings) -> ``.npy``; lists/tuples of numbers or strings are
  turned into arrays first; lists of dicts into DataFrames;
* SciPy sparse matrices -> ``.npz`` (CSR);
* pandas DataFrames and Series -> Parquet (column names as strings, index dropped);
* fitted estimators (anything with ``fit``) -> a JSON summary (class, parameters, fitted or
  not) plus, as arrays, ``predict`` / ``predict_proba`` on every captured ``X*`` matrix and
  numeric fitted attributes (``coef_``, ``intercept_``, ``classes_``);
* numbers, strings, booleans, None -> JSON; anything else -> its type and a short repr.

``manifest.json`` lists what was written and the script's top-level names (for the "missing
name" error). With ``unsplit``, ``sklearn.model_selection.train_test_split`` is replaced before
the script runs by an identity split (train = test = all rows, in input order), so the captured
training data covers every prepared row; see :func:`~lester_dagster.rewrite.capture.capture_script`.
"""

from __future__ import annotations

import copy
import json
import runpy
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MANIFEST", "dump_values", "main", "run_script"]

MANIFEST = "manifest.json"
_FITTED_ATTRIBUTES = ("coef_", "intercept_", "classes_", "feature_importances_", "n_iter_")


def _identity_split(*arrays: Any, **_options: Any) -> list[Any]:
    """A stand-in for ``train_test_split``: every input twice (train, test), copied."""
    if not arrays:
        raise ValueError("At least one array required as input")
    out: list[Any] = []
    for array in arrays:
        for _ in range(2):
            out.append(array.copy() if hasattr(array, "copy") else copy.copy(array))
    return out


def _patch_split() -> None:
    import sklearn.model_selection

    sklearn.model_selection.train_test_split = _identity_split


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in name)


def _frame_to_parquet(frame: Any, path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(frame).reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    try:
        frame.to_parquet(path, index=False)
    except Exception:  # mixed-type object columns: store them as text
        for column in frame.columns:
            if frame[column].dtype == object:
                frame[column] = frame[column].map(lambda v: None if v is None else str(v))
        frame.to_parquet(path, index=False)


def _as_array(value: Sequence[Any]) -> np.ndarray | None:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        return None
    return None if array.dtype == object else array


def _dump_model(name: str, model: Any, matrices: Mapping[str, Any], out: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": "model",
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "params": {},
        "arrays": {},
        "errors": [],
    }
    get_params = getattr(model, "get_params", None)
    if callable(get_params):
        try:
            entry["params"] = {k: repr(v) for k, v in get_params(deep=False).items()}
        except Exception as error:
            entry["errors"].append(f"get_params: {error!r}")
    try:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(model)
        entry["fitted"] = True
    except Exception as error:
        entry["fitted"] = False
        entry["errors"].append(f"not fitted: {error}")

    def save(key: str, value: Any) -> None:
        array = np.asarray(value)
        if array.dtype == object:
            array = array.astype(str)
        file = f"{_safe_name(name)}.{key}.npy"
        np.save(out / file, array, allow_pickle=False)
        entry["arrays"][key] = file

    for attribute in _FITTED_ATTRIBUTES:
        if hasattr(model, attribute):
            try:
                save(attribute, getattr(model, attribute))
            except Exception as error:
                entry["errors"].append(f"{attribute}: {error!r}")
    if entry["fitted"]:
        for matrix_name, matrix in matrices.items():
            for method in ("predict", "predict_proba"):
                if not callable(getattr(model, method, None)):
                    continue
                try:
                    save(f"{method}.{matrix_name}", getattr(model, method)(matrix))
                except Exception as error:
                    entry["errors"].append(f"{method}({matrix_name}): {error!r}")
    return entry


def _dump_one(name: str, value: Any, out: Path) -> dict[str, Any] | None:
    import pandas as pd
    import scipy.sparse

    stem = _safe_name(name)
    if scipy.sparse.issparse(value):
        scipy.sparse.save_npz(out / f"{stem}.npz", scipy.sparse.csr_matrix(value))
        return {"kind": "sparse", "file": f"{stem}.npz"}
    if isinstance(value, pd.DataFrame):
        _frame_to_parquet(value, out / f"{stem}.parquet")
        return {"kind": "frame", "file": f"{stem}.parquet"}
    if isinstance(value, pd.Series):
        _frame_to_parquet(value.to_frame(name="values"), out / f"{stem}.parquet")
        return {"kind": "series", "file": f"{stem}.parquet", "name": repr(value.name)}
    if isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
        _frame_to_parquet(pd.DataFrame(list(value)), out / f"{stem}.parquet")
        return {"kind": "frame", "file": f"{stem}.parquet"}
    if isinstance(value, list | tuple) and not any(isinstance(v, dict) for v in value):
        value = _as_array(value) if value else np.asarray([], dtype=float)
    if isinstance(value, np.ndarray) and value.dtype != object:
        np.save(out / f"{stem}.npy", value, allow_pickle=False)
        return {"kind": "array", "file": f"{stem}.npy"}
    if isinstance(value, bool | int | float | str) or value is None:
        return {"kind": "json", "value": value}
    if isinstance(value, np.generic):
        return {"kind": "json", "value": value.item()}
    return None


def dump_values(
    values: Mapping[str, Any], out_dir: str | Path, *, defined: Sequence[str] = ()
) -> dict[str, Any]:
    """Write ``values`` (name -> value) into ``out_dir`` as described in the module docstring
    and return the manifest (also written as ``manifest.json``). ``defined`` lists the names
    the code defined, reported when a required name is missing."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    models = {}
    for name, value in values.items():
        if callable(getattr(value, "fit", None)) and not isinstance(value, type):
            models[name] = value
            continue
        entry = _dump_one(name, value, out)
        if entry is None:
            entry = {"kind": "opaque", "type": type(value).__qualname__, "repr": repr(value)[:300]}
        entries[name] = entry
    matrices = {
        name: value
        for name, value in values.items()
        if name.startswith("X")
        and entries.get(name, {}).get("kind") in ("array", "sparse", "frame")
    }
    for name, model in models.items():
        entries[name] = _dump_model(name, model, matrices, out)
    manifest = {"values": entries, "defined": sorted(defined)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def _top_level_names(namespace: Mapping[str, Any]) -> list[str]:
    return [
        name
        for name, value in namespace.items()
        if not name.startswith("__") and not isinstance(value, types.ModuleType)
    ]


def run_script(
    script: str, args: Sequence[str], names: Sequence[str], out_dir: str, *, unsplit: bool = False
) -> dict[str, Any]:
    """Run ``script`` as ``__main__`` with ``args`` and dump the globals in ``names``."""
    if unsplit:
        _patch_split()
    path = Path(script).resolve()
    sys.argv = [str(path), *args]
    sys.path.insert(0, str(path.parent))
    namespace = runpy.run_path(str(path), run_name="__main__")
    values = {name: namespace[name] for name in names if name in namespace}
    return dump_values(values, out_dir, defined=_top_level_names(namespace))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lester_dagster.rewrite.runner SPEC.json``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 1:
        sys.stderr.write("usage: python -m lester_dagster.rewrite.runner SPEC.json\n")
        return 2
    spec = json.loads(Path(arguments[0]).read_text(encoding="utf-8"))
    run_script(
        spec["script"],
        spec.get("args", []),
        spec["names"],
        spec["out_dir"],
        unsplit=bool(spec.get("unsplit", False)),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
