"""Run a generated pipeline module without Dagster: the rewrite's execution check.

``python -m lester_dagster.orchestration.harness SPEC.json`` (run by
:mod:`lester_dagster.rewrite.rewrite` inside the sandbox, with the sample data under the working
directory where the module's ``DATA_DIR`` points) imports the module file, takes its
``pipeline`` (a :class:`LesterPipeline`), and runs the steps its Dagster assets run
(:mod:`lester_dagster.orchestration.steps`), in two ways:

* **unsplit**, for the differential check: every source read, ``prepare``, then the feature
  encoding, the labels and the model fitted on **all** prepared rows (the module's
  ``SplitSpec`` splits by a key hash, which never equals the script's ``train_test_split``; the
  original script runs with an identity split too). ``X_train``, ``y_train`` and ``model`` are
  written in the capture format (below);
* **split**, as the assets do: train/test rows by the split, the training state fitted on the
  training rows (:func:`~lester_dagster.orchestration.steps.fit_training`, encoders with their
  forgetting trackers), X_test and y_test. A failure here is reported; one kind is a known
  limit of the framework, not of the module: prepared rows that aggregate several records
  (``group_by``) cannot be split or forgotten yet, which the summary records as a
  ``limitation``.

The spec (JSON): ``{"module": FILE, "name": PIPELINE NAME, "out_dir": DIR}``. The outputs in
``out_dir``: ``manifest.json`` with its files, in the format that
:func:`lester_dagster.rewrite.capture.load_captured` reads (documented in
:mod:`lester_dagster.rewrite.runner`; arrays as ``.npy``, sparse matrices as CSR ``.npz``, the
model as a JSON summary with ``coef_`` ... and ``predict`` / ``predict_proba`` on ``X_train``
as ``.npy``, nothing pickled), and ``harness.json``, a summary: rows and columns of each source
and of the prepared rows, the shapes, the split's outcome, the row UDFs of the plan and the
seconds per step. This module writes that format itself (a few lines): the orchestration and
rewrite packages are independent siblings (import-linter), so neither imports the other; the
round trip is tested against the reader.

On an error the harness prints one paragraph naming the step, the exception and the lines of
the generated module in the traceback to stderr and exits 1 (the sandbox hands it to the
repair prompt).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from lester_dagster.errors import PlanError, UnsupportedOperationError

__all__ = [
    "MANIFEST",
    "SUMMARY",
    "HarnessError",
    "dump_artifacts",
    "load_module",
    "main",
    "run_module",
]

MANIFEST = "manifest.json"
"""The file listing the written values (the capture format of ``lester_dagster.rewrite``)."""
SUMMARY = "harness.json"
"""The harness's summary of the run."""

_FITTED_ATTRIBUTES = ("coef_", "intercept_", "classes_", "feature_importances_", "n_iter_")
_T = TypeVar("_T")


class HarnessError(Exception):
    """A step of the generated module failed; the message is meant for the repair prompt."""


# -- writing in the capture format ---------------------------------------------------------------
def _save(out: Path, file: str, value: Any) -> str:
    array = np.asarray(value)
    if array.dtype == object:
        array = array.astype(str)
    np.save(out / file, array, allow_pickle=False)
    return file


def _dump_model(model: Any, matrices: Mapping[str, Any], out: Path) -> dict[str, Any]:
    from sklearn.utils.validation import check_is_fitted

    entry: dict[str, Any] = {
        "kind": "model",
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "params": {k: repr(v) for k, v in model.get_params(deep=False).items()},
        "arrays": {},
        "errors": [],
    }
    try:
        check_is_fitted(model)
        entry["fitted"] = True
    except Exception as error:
        entry["fitted"] = False
        entry["errors"].append(f"not fitted: {error}")
    for attribute in _FITTED_ATTRIBUTES:
        if hasattr(model, attribute):
            entry["arrays"][attribute] = _save(
                out, f"model.{attribute}.npy", getattr(model, attribute)
            )
    if entry["fitted"]:
        for name, matrix in matrices.items():
            for method in ("predict", "predict_proba"):
                function = getattr(model, method, None)
                if not callable(function):
                    continue
                try:
                    result = function(matrix)
                except Exception as error:
                    entry["errors"].append(f"{method}({name}): {error!r}")
                    continue
                entry["arrays"][f"{method}.{name}"] = _save(
                    out, f"model.{method}.{name}.npy", result
                )
    return entry


def dump_artifacts(
    values: Mapping[str, Any], out_dir: str | Path, *, defined: Sequence[str] = ()
) -> dict[str, Any]:
    """Write matrices (dense or sparse), label vectors and one fitted model (the value named
    ``model``) into ``out_dir`` in the capture format; returns the manifest (also written)."""
    import scipy.sparse

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    for name, value in values.items():
        if name == "model":
            continue
        if scipy.sparse.issparse(value):
            file = f"{name}.npz"
            scipy.sparse.save_npz(out / file, scipy.sparse.csr_matrix(value))
            entries[name] = {"kind": "sparse", "file": file}
        else:
            entries[name] = {"kind": "array", "file": _save(out, f"{name}.npy", value)}
    if "model" in values:
        matrices = {n: v for n, v in values.items() if n.startswith("X")}
        entries["model"] = _dump_model(values["model"], matrices, out)
    manifest = {"values": entries, "defined": sorted(defined)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


# -- running the module --------------------------------------------------------------------------
def _module_lines(error: BaseException, module_file: Path) -> list[str]:
    frames = traceback.extract_tb(error.__traceback__)
    return [
        f"line {f.lineno} of the module, in {f.name}: {(f.line or '').strip()}"
        for f in frames
        if Path(f.filename).resolve() == module_file.resolve()
    ]


def _step(what: str, module_file: Path, seconds: dict[str, float], call: Callable[[], _T]) -> _T:
    started = time.perf_counter()
    try:
        return call()
    except HarnessError:
        raise
    except Exception as error:
        where = _module_lines(error, module_file)
        text = f"{what} failed: {type(error).__name__}: {error}"
        if where:
            text += "\n" + "\n".join(where[-3:])
        raise HarnessError(text) from error
    finally:
        seconds[what] = round(time.perf_counter() - started, 3)


def load_module(path: str | Path, module_name: str = "lester_generated_module") -> ModuleType:
    """Import the module file ``path`` under ``module_name`` (registered in ``sys.modules``)."""
    file = Path(path)
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise HarnessError(f"cannot import {file}: not a Python module file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _pipeline_of(module: ModuleType, name: str) -> Any:
    from lester_dagster.orchestration.pipeline import LesterPipeline

    pipeline = getattr(module, "pipeline", None)
    if not isinstance(pipeline, LesterPipeline):
        raise HarnessError(
            "the module must define `pipeline = LesterPipeline(...)` at top level; it defines "
            f"`pipeline` as {type(pipeline).__name__}"
        )
    if pipeline.name != name:
        raise HarnessError(
            f"the pipeline is named {pipeline.name!r}; it must be named {name!r} "
            f"(LesterPipeline(name={name!r}, ...))"
        )
    return pipeline


def _read_source(name: str, spec: Any) -> Any:
    from lester_dagster.orchestration import steps

    return steps.read_source(name, spec)[0]


def _udfs(plan: Any) -> list[str]:
    """The plan's row UDFs (Python functions with declared inputs): ``name(inputs) in <node>``."""
    import dataclasses

    from lester_dagster.frame.plan import RowFunc

    found: set[str] = set()
    seen: set[int] = set()
    stack = [plan.node]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(node.children)
        if not dataclasses.is_dataclass(node):
            continue
        for field in dataclasses.fields(node):
            value = getattr(node, field.name)
            if isinstance(value, RowFunc):
                kind = "vectorised" if value.vectorized else "per row"
                found.add(
                    f"{value.name}({', '.join(value.inputs)}) in {type(node).__name__} ({kind})"
                )
    return sorted(found)


def run_module(module_file: str | Path, name: str, out_dir: str | Path) -> dict[str, Any]:
    """Run the pipeline of ``module_file`` as described in the module docstring; write the
    unsplit ``X_train`` / ``y_train`` / ``model`` and the summary into ``out_dir``; return the
    summary. Raises :class:`HarnessError` naming the step that failed."""
    from lester_dagster.features.matrix import encode_labels, fit_encode
    from lester_dagster.models.dispatch import fit_for_forgetting
    from lester_dagster.orchestration import steps

    file = Path(module_file)
    seconds: dict[str, float] = {}
    module = _step("importing the module", file, seconds, lambda: load_module(file))
    pipeline = _step("finding the pipeline", file, seconds, lambda: _pipeline_of(module, name))
    inputs: dict[str, Any] = {}
    sources: dict[str, Any] = {}
    for source, spec in pipeline.sources.items():
        artifact = _step(
            f"reading source {source!r} ({spec.path})",
            file,
            seconds,
            functools.partial(_read_source, source, spec),
        )
        inputs[source] = artifact
        sources[source] = {
            "rows": len(artifact),
            "columns": list(artifact.columns),
            "key": list(spec.key_columns),
            "path": str(spec.path),
        }
    prepared, plan = _step("prepare()", file, seconds, lambda: steps.run_prepare(pipeline, inputs))
    if len(prepared) == 0:
        raise HarnessError(
            "prepare() returned no rows on the sample data; check its filters and joins "
            f"(source rows: { {s: v['rows'] for s, v in sources.items()} })"
        )
    result = prepared.to_result()
    _, matrix = _step(
        "features() on all prepared rows",
        file,
        seconds,
        lambda: fit_encode(pipeline.features(), result),
    )
    labels = _step(
        "label() on all prepared rows",
        file,
        seconds,
        lambda: encode_labels(pipeline.label, result, inputs=pipeline.label_inputs),
    )
    unlearner = _step(
        "model() fitted on all prepared rows",
        file,
        seconds,
        lambda: fit_for_forgetting(pipeline.model(), matrix.X, labels.y),
    )
    X = matrix.X
    dump_artifacts(
        {"X_train": X, "y_train": np.asarray(labels.y), "model": unlearner.model}, out_dir
    )
    summary: dict[str, Any] = {
        "pipeline": pipeline.name,
        "sources": sources,
        "prepared": {
            "rows": len(prepared),
            "columns": list(prepared.columns),
            "aggregated": not prepared.prov.single,
        },
        "X": [int(X.shape[0]), int(X.shape[1])],
        "y_values": sorted({str(v) for v in np.asarray(labels.y).tolist()}),
        "udfs": _udfs(plan),
        "model": type(unlearner.model).__name__,
        "forgetting": getattr(unlearner, "strategy", None),
    }
    summary["split"] = _split(pipeline, prepared, file, seconds)
    summary["seconds"] = seconds
    (Path(out_dir) / SUMMARY).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def _split(pipeline: Any, prepared: Any, file: Path, seconds: dict[str, float]) -> dict[str, Any]:
    """The assets' path: train/test rows, the training state, X_test, y_test."""
    from lester_dagster.orchestration import steps

    try:
        train = _step(
            "the split (train rows)",
            file,
            seconds,
            lambda: steps.split_rows(pipeline, prepared, "train"),
        )
    except HarnessError as error:
        if isinstance(error.__cause__, UnsupportedOperationError):
            return {"limitation": str(error.__cause__)}
        raise
    test = steps.split_rows(pipeline, prepared, "test")
    try:
        state = _step(
            "fitting the training rows", file, seconds, lambda: steps.fit_training(pipeline, train)
        )
    except HarnessError as error:
        if isinstance(error.__cause__, UnsupportedOperationError):
            return {"limitation": str(error.__cause__), "train": len(train), "test": len(test)}
        raise
    out: dict[str, Any] = {"train": len(train), "test": len(test)}
    if len(test):
        x_test = _step("X_test", file, seconds, lambda: steps.encode_test(state, test))
        _step("y_test", file, seconds, lambda: steps.testing_labels(pipeline, test))
        out["X_test"] = [int(x_test.X.shape[0]), int(x_test.X.shape[1])]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lester_dagster.orchestration.harness SPEC.json``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 1:
        sys.stderr.write("usage: python -m lester_dagster.orchestration.harness SPEC.json\n")
        return 2
    spec = json.loads(Path(arguments[0]).read_text(encoding="utf-8"))
    try:
        run_module(spec["module"], spec["name"], spec["out_dir"])
    except (HarnessError, PlanError) as error:
        sys.stderr.write(f"{error}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
