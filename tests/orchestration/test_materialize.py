"""The running example materialised with ``dagster.materialize``: every asset, its metadata
against the frame's own numbers (computed here by running the frame plan directly), the stored
artifacts against an independent fit, and the asset checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest
import scipy.sparse as sp

from lester_dagster.examples.complaints import (
    LABEL_INPUTS,
    PREPARED_COLUMNS,
    feature_encoding,
    label,
    prepare,
)
from lester_dagster.features.matrix import FeatureMatrix, encode, fit_encode
from lester_dagster.frame import Result, execute
from lester_dagster.ivm.training import TrainingState
from lester_dagster.models.dispatch import unlearner_for
from lester_dagster.orchestration import FrameArtifact, LabelsArtifact
from lester_dagster.store import read_manifest
from tests.orchestration.conftest import EXAMPLE_KEYS, Materialised


@pytest.fixture(scope="module")
def frames(sources: tuple[Path, Path]) -> dict[str, Result]:
    """The running example computed directly with the frame API (no Dagster, no store)."""
    prepared = prepare(*sources)
    train, test = prepared.split(by="customers", test_fraction=0.2, seed=0)
    p, a, b = execute(prepared, train, test)
    return {"complaints": p, "train": a, "test": b}


def _dense(X: Any) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _lineage(meta: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    lineage = meta["dagster/column_lineage"]
    assert isinstance(lineage, dg.TableColumnLineage)
    return {
        column: {(d.asset_key.to_user_string(), d.column_name) for d in deps}
        for column, deps in lineage.deps_by_column.items()
    }


def test_every_asset_materialises_in_the_pipelines_group(run: Materialised) -> None:
    assert run.result.success
    assert run.materialised == EXAMPLE_KEYS


def test_row_counts_equal_the_frames_own(run: Materialised, frames: dict[str, Result]) -> None:
    sources = frames["complaints"].sources
    expected = {
        "customers": sources["customers"].rows,
        "mails": sources["mails"].rows,
        "complaints": len(frames["complaints"]),
        "train": len(frames["train"]),
        "test": len(frames["test"]),
        "X_train": len(frames["train"]),
        "y_train": len(frames["train"]),
        "model": len(frames["train"]),
        "X_test": len(frames["test"]),
        "y_test": len(frames["test"]),
    }
    got = {key: run.metadata(key)["dagster/row_count"] for key in EXAMPLE_KEYS}
    assert got == expected
    assert 0 < expected["test"] < expected["train"] < expected["complaints"]


def test_prepared_column_lineage_is_the_frames_mapped_to_source_assets(
    run: Materialised, frames: dict[str, Result]
) -> None:
    expected = {
        column: {(ref.source, ref.column) for ref in refs}
        for column, refs in frames["complaints"].schema.lineage.items()
    }
    assert _lineage(run.metadata("complaints")) == expected
    assert expected["email"] == {("customers", "email"), ("mails", "email")}


def test_train_and_test_columns_derive_from_the_prepared_asset(run: Materialised) -> None:
    for key in ("train", "test"):
        assert _lineage(run.metadata(key)) == {c: {("complaints", c)} for c in PREPARED_COLUMNS}


def test_source_assets_have_schema_and_empty_column_lineage(
    run: Materialised, sources: tuple[Path, Path]
) -> None:
    meta = run.metadata("customers")
    schema = meta["dagster/column_schema"]
    assert [c.name for c in schema.columns] == [
        "customer_id", "email", "bank", "country", "level"
    ]  # fmt: skip
    assert _lineage(meta) == {c.name: set() for c in schema.columns}
    assert meta["lester/sources"] == {"customers": {"asset": "customers", "key": ["customer_id"]}}
    assert meta["lester/generated"] is False
    assert meta["lester/path"] == str(sources[0])


def test_x_metadata_blocks_tile_the_matrix(run: Materialised, frames: dict[str, Result]) -> None:
    _, independent = fit_encode(feature_encoding(), frames["train"])
    for key in ("X_train", "X_test"):
        meta = run.metadata(key)
        ranges = meta["lester/column_ranges"]
        widths = [r["width"] for r in ranges.values()]
        assert meta["lester/shape"][1] == sum(widths) == independent.shape[1]
        assert {name: (r["start"], r["stop"]) for name, r in ranges.items()} == {
            b.name: (b.start, b.stop) for b in independent.blocks
        }
        assert ranges["country"]["source_columns"] == ["customers.country"]
        assert [c.name for c in meta["dagster/column_schema"].columns] == list(ranges)
        rows = "train" if key == "X_train" else "test"
        assert _lineage(meta) == {b.name: {(rows, c) for c in b.inputs} for b in independent.blocks}


def test_labels_and_model_lineage(run: Materialised) -> None:
    assert _lineage(run.metadata("y_train")) == {"y": {("train", c) for c in LABEL_INPUTS}}
    assert _lineage(run.metadata("y_test")) == {"y": {("test", c) for c in LABEL_INPUTS}}
    model = _lineage(run.metadata("model"))
    assert model.pop("y") == {("y_train", "y")}
    assert model == {b: {("X_train", b)} for b in ("title", "text", "title_words", "country")}


def test_provenance_summary_counts_rows_and_keys_per_source(
    run: Materialised, frames: dict[str, Result]
) -> None:
    for key in ("complaints", "train", "test"):
        prov = frames[key].prov
        summary = run.metadata(key)["lester/provenance"]
        assert summary["rows"] == len(frames[key])
        assert summary["rows_per_source"] == {"mails": prov.n, "customers": prov.n}
        assert summary["keys_per_source"] == {
            s: len(np.unique(prov.keys[s])) for s in ("mails", "customers")
        }
    meta = run.metadata("X_train")
    assert meta["lester/sources"] == {
        "mails": {"asset": "mails", "key": ["mail_id"]},
        "customers": {"asset": "customers", "key": ["customer_id"]},
    }


def test_every_materialisation_has_the_contract_keys(run: Materialised) -> None:
    for key in EXAMPLE_KEYS:
        meta = run.metadata(key)
        for name in (
            "dagster/row_count",
            "dagster/column_lineage",
            "dagster/column_schema",
            "lester/sources",
            "lester/provenance",
            "lester/manifest_digest",
        ):
            assert name in meta, (key, name)
        assert meta["lester/ledger_watermark"] == 0  # no request applied yet
        path = run.base / key
        assert meta["lester/artifact_path"] == str(path)
        assert meta["lester/manifest_digest"] == read_manifest(path).digest


def test_update_strategies_come_from_the_trackers_and_unlearner(run: Materialised) -> None:
    state = run.manager.load(dg.AssetKey("model"))
    assert isinstance(state, TrainingState)
    strategy = run.metadata("model")["lester/update_strategy"]
    assert {n: e["strategy"] for n, e in strategy["encoders"].items()} == {
        "title": "stateless", "text": "stateless", "title_words": "exact", "country": "exact"
    }  # fmt: skip
    family, _ = unlearner_for(run.pipeline.model(), state.X, state.y)
    assert strategy["model"]["component"] == "model:LogisticRegression"
    assert strategy["model"]["strategy"] == state.unlearner.strategy
    assert family.__name__ == "LogisticUnlearner"
    assert run.metadata("X_train")["lester/update_strategy"] == {"encoders": strategy["encoders"]}


def test_stored_artifacts_equal_an_independent_fit(
    run: Materialised, frames: dict[str, Result]
) -> None:
    load = run.manager.load
    train = load(dg.AssetKey("train"))
    assert isinstance(train, FrameArtifact)
    assert train.data.equals(frames["train"].to_pandas())
    assert np.array_equal(train.prov.keys["customers"], frames["train"].prov.keys["customers"])
    encoding, independent = fit_encode(feature_encoding(), frames["train"])
    X_train = load(dg.AssetKey("X_train"))
    assert isinstance(X_train, FeatureMatrix)
    assert np.allclose(_dense(X_train.X), _dense(independent.X))
    X_test = load(dg.AssetKey("X_test"))
    assert np.allclose(_dense(X_test.X), _dense(encode(encoding, frames["test"]).X))
    y_train, y_test = load(dg.AssetKey("y_train")), load(dg.AssetKey("y_test"))
    assert isinstance(y_train, LabelsArtifact)
    expected = label(frames["train"].to_pandas()[list(LABEL_INPUTS)]).to_numpy()
    assert np.array_equal(y_train.y, expected)
    assert np.array_equal(y_test.y, label(frames["test"].to_pandas()).to_numpy())
    state = load(dg.AssetKey("model"))
    assert np.allclose(_dense(state.X), _dense(X_train.X))


def test_stored_x_resolves_source_keys_to_its_rows(
    run: Materialised, frames: dict[str, Result]
) -> None:
    train = frames["train"]
    customer = train.to_pandas()["customer_id"].iloc[0]
    X_train = run.manager.load(dg.AssetKey("X_train"))
    reached = X_train.forward("customers", [customer])
    assert reached.rows.tolist() == train.lineage.forward("customers", [customer])
    assert "country" in reached.blocks


def test_all_asset_checks_pass(run: Materialised) -> None:
    checks = run.checks()
    # 12 consistency checks, no_deleted_data on each of the 10 assets, model_equals_refit
    assert len(checks) == 23
    assert {a for a, name in checks if name == "no_deleted_data"} == EXAMPLE_KEYS
    assert ("model", "model_equals_refit") in checks
    assert all(checks.values()), checks
    assert "rows agree" in run.check_description("X_train", "row_counts_consistent")


def test_code_versions_are_recorded(run: Materialised) -> None:
    events = run.result.get_asset_materialization_events()
    tags = {e.asset_key.to_user_string(): e.materialization.tags or {} for e in events}
    assert all(t.get("dagster/code_version") for t in tags.values()), tags


def test_the_model_state_finds_training_rows_by_source_key(
    run: Materialised, frames: dict[str, Result]
) -> None:
    state = run.manager.load(dg.AssetKey("model"))
    train, test = frames["train"].to_pandas(), frames["test"].to_pandas()
    customer = train["customer_id"].iloc[0]
    assert state.rows_of("customers", [customer]).tolist() == frames["train"].lineage.forward(
        "customers", [customer]
    )
    held_out = test["customer_id"].iloc[0]  # a record of the source, but not a training row
    assert state.rows_of("customers", [held_out]).tolist() == []


def test_materialisations_say_which_row_segments_they_wrote(run: Materialised) -> None:
    """X_train is written whole; the model state then links X_train's segments (its X)."""
    x_train, model = run.metadata("X_train"), run.metadata("model")
    manifest = read_manifest(run.base / "X_train")
    segment_files = [n for n, e in manifest.files.items() if "-" in e.path.rsplit("/", 1)[-1]]
    assert x_train["lester/segments_written"] + x_train["lester/segments_linked"] == len(
        segment_files
    )
    assert x_train["lester/segment_bytes_written"] > 0
    assert model["lester/segments_linked"] >= len([n for n in segment_files if n.startswith("X.")])
