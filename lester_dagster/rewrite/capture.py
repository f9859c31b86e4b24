"""Capture what a script leaves behind (``X_train``, ``y_train``, ``model`` ...) by running it
in the sandbox: the "original" side of the differential check.

:func:`capture_script` runs ``python script.py ARGS`` through
:func:`~lester_dagster.rewrite.sandbox.run_python` with the runner of
:mod:`lester_dagster.rewrite.runner`, which dumps the named module-level variables into a
temporary directory; :func:`load_captured` reads them back **without unpickling** (arrays via
``np.load(allow_pickle=False)``, sparse matrices via ``load_npz``, frames via Parquet). A model
comes back as a :class:`ModelSummary` (class, parameters, ``predict`` / ``predict_proba`` on
each captured ``X*`` matrix, ``coef_`` ...), never as the live object: the check compares
behaviour, and a pickle written by generated code would execute code in this process.

To capture a *generated* pipeline the same way, write a small driver script that runs it and
assigns ``X_train``, ``y_train``, ``model`` ... as globals, and capture that driver; or call
:func:`lester_dagster.rewrite.runner.dump_values` in the child and :func:`load_captured` here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lester_dagster.errors import RewriteCheckError, preview
from lester_dagster.rewrite.runner import MANIFEST
from lester_dagster.rewrite.sandbox import DEFAULT_MEMORY_MB, SandboxResult, run_python

__all__ = [
    "DEFAULT_NAMES",
    "REQUIRED_NAMES",
    "Captured",
    "ModelSummary",
    "Opaque",
    "capture_script",
    "load_captured",
]

DEFAULT_NAMES: tuple[str, ...] = ("X_train", "y_train", "model", "X_test", "y_test")
"""The globals captured by default (the conventions of ``examples/messy/README.md``)."""
REQUIRED_NAMES: tuple[str, ...] = ("X_train", "y_train", "model")
"""The globals a script must define; the others are captured when present."""


@dataclass(frozen=True)
class ModelSummary:
    """A fitted estimator as the parent sees it: no live object, only what can be compared.

    ``arrays`` holds ``coef_``, ``intercept_``, ``classes_`` ... (when the model has them) and
    ``predict.<X name>`` / ``predict_proba.<X name>`` for every captured ``X*`` matrix.
    """

    class_name: str
    params: Mapping[str, str]
    fitted: bool
    arrays: Mapping[str, np.ndarray]
    errors: tuple[str, ...] = ()

    def predictions(self, matrix: str) -> np.ndarray | None:
        """``predict`` on the captured matrix named ``matrix`` (None if not available)."""
        return self.arrays.get(f"predict.{matrix}")

    def probabilities(self, matrix: str) -> np.ndarray | None:
        """``predict_proba`` on the captured matrix named ``matrix`` (None if not available)."""
        return self.arrays.get(f"predict_proba.{matrix}")


@dataclass(frozen=True)
class Opaque:
    """A captured global of a type the runner does not transfer (its type and a short repr)."""

    type_name: str
    text: str


@dataclass(frozen=True)
class Captured:
    """The globals a run left behind (``values``: name -> value), with its output and wall
    time. ``captured["X_train"]``, ``"model" in captured`` and ``captured.get(...)`` read
    ``values``.

    Values are NumPy arrays, SciPy sparse CSR matrices, pandas DataFrames / Series,
    :class:`ModelSummary`, plain JSON values or :class:`Opaque`. ``defined`` lists every
    top-level name the script defined (modules and dunders left out).
    """

    values: Mapping[str, Any]
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    defined: tuple[str, ...] = field(default=())

    def __getitem__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise KeyError(f"{name!r} was not captured; captured: {preview(self.values)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def get(self, name: str, default: Any = None) -> Any:
        """The captured value of ``name``, or ``default``."""
        return self.values.get(name, default)


def _load_entry(directory: Path, entry: Mapping[str, Any]) -> Any:
    kind = entry["kind"]
    if kind == "array":
        return np.load(directory / entry["file"], allow_pickle=False)
    if kind == "sparse":
        import scipy.sparse

        return scipy.sparse.load_npz(directory / entry["file"]).tocsr()
    if kind in ("frame", "series"):
        import pandas as pd

        frame = pd.read_parquet(directory / entry["file"])
        return frame["values"] if kind == "series" else frame
    if kind == "json":
        return entry["value"]
    if kind == "model":
        arrays = {
            key: np.load(directory / file, allow_pickle=False)
            for key, file in entry["arrays"].items()
        }
        return ModelSummary(
            class_name=entry["class"],
            params=dict(entry["params"]),
            fitted=bool(entry["fitted"]),
            arrays=arrays,
            errors=tuple(entry["errors"]),
        )
    return Opaque(type_name=str(entry.get("type", "?")), text=str(entry.get("repr", "")))


def load_captured(
    directory: str | os.PathLike[str], *, run: SandboxResult | None = None
) -> Captured:
    """Read the values that :func:`lester_dagster.rewrite.runner.dump_values` wrote into
    ``directory``; ``run`` (the sandbox result) supplies stdout, stderr and seconds."""
    path = Path(directory)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise RewriteCheckError(
            f"no captured values in {path} (missing {MANIFEST}); the run ended before the "
            "runner wrote them"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    values = {name: _load_entry(path, entry) for name, entry in manifest["values"].items()}
    return Captured(
        values=values,
        stdout=run.stdout if run else "",
        stderr=run.stderr if run else "",
        seconds=run.seconds if run else 0.0,
        defined=tuple(manifest.get("defined", ())),
    )


def _check_names(names: Sequence[str], required: Sequence[str]) -> None:
    for name in [*names, *required]:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"captured names must be Python identifiers, got {name!r}")
    not_listed = [name for name in required if name not in names]
    if not_listed:
        raise ValueError(f"required names {not_listed} must also be in names {list(names)}")


def capture_script(
    script: str | os.PathLike[str],
    args: Sequence[str | os.PathLike[str]] = (),
    *,
    names: Sequence[str] = DEFAULT_NAMES,
    required: Sequence[str] = REQUIRED_NAMES,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 300.0,
    memory_mb: int = DEFAULT_MEMORY_MB,
    env: Mapping[str, str] | None = None,
    unsplit: bool = False,
) -> Captured:
    """Run ``python script ARGS`` in the sandbox and return the module-level variables in
    ``names`` that it left behind.

    Raises :class:`RewriteCheckError` when the script fails, hits the time or memory limit
    (the message says which and how to raise it), or does not define every name of
    ``required`` (the message lists what is missing and what the script did define).
    ``cwd`` defaults to a fresh temporary directory (stray files land there and vanish);
    ``env`` adds environment variables (credentials are never passed, see
    :func:`~lester_dagster.rewrite.sandbox.minimal_env`). With ``unsplit=True``,
    ``sklearn.model_selection.train_test_split`` returns its inputs unsplit (train and test
    are both all rows, in input order), so ``X_train`` / ``y_train`` cover every prepared row
    whatever split the script used: compare them with a rewrite run without a split.
    """
    _check_names(names, required)
    script_path = Path(script).resolve()
    if not script_path.is_file():
        raise RewriteCheckError(f"script {os.fspath(script)!r} does not exist (or is no file)")
    with tempfile.TemporaryDirectory(prefix="lester-capture-") as temp:
        out_dir, spec_path = Path(temp) / "out", Path(temp) / "spec.json"
        work = Path(temp) / "work"
        work.mkdir()
        spec = {
            "script": str(script_path),
            "args": [os.fspath(a) for a in args],
            "names": list(names),
            "out_dir": str(out_dir),
            "unsplit": unsplit,
        }
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        run = run_python(
            ["-m", "lester_dagster.rewrite.runner", str(spec_path)],
            cwd=cwd if cwd is not None else work,
            timeout=timeout,
            memory_mb=memory_mb,
            env=env,
        )
        run.check(f"the script {script_path.name}")
        captured = load_captured(out_dir, run=run)
    missing = [name for name in required if name not in captured.values]
    if missing:
        raise RewriteCheckError(
            f"the script {script_path.name} ran but did not define {preview(missing)} at module "
            f"level; it defined: {preview(captured.defined, 40)}. Assign the results to "
            f"module-level variables named {preview(required)} (see examples/messy/README.md)"
        )
    return captured
