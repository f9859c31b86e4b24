"""Partitions: key-hash buckets (the running example with partitions=4) and per-file partitions
of multi-file sources (the example's mails over three files), every partition materialised and
compared with the unpartitioned run of the same data (the ``run`` fixture)."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from lester_dagster.errors import PlanError, SourceError
from lester_dagster.examples import complaints as example
from lester_dagster.examples.complaints_data import KEPT_COUNTRIES, START_DATE, TOPIC_PATTERN
from lester_dagster.frame import Frame, col
from lester_dagster.frame.provenance import mix64
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration import LesterIOManager, build_definitions
from lester_dagster.orchestration.artifacts import FrameArtifact
from lester_dagster.orchestration.definitions import pipeline_resources
from lester_dagster.orchestration.partitions import file_partition_key, file_partitions
from lester_dagster.orchestration.pipeline import LesterPipeline, SourceSpec
from lester_dagster.orchestration.steps import read_source
from tests.orchestration.conftest import Materialised

N = 4
BUCKETS = ["b00", "b01", "b02", "b03"]
SALT = 0x6C65_7374_6572_4275  # the documented bucket salt (partitions.BUCKET_SALT)
PARTITIONED = ("customers", "mails", "complaints", "train", "test")
UNPARTITIONED = ("X_train", "y_train", "model", "X_test", "y_test")


def expected_bucket(ids: np.ndarray) -> np.ndarray:
    return (mix64(ids.astype(np.uint64), SALT) % np.uint64(N)).astype(np.int64)


def row_set(frame: FrameArtifact) -> Counter[tuple[int, ...]]:
    """The rows as a multiset of their provenance (one key id per source)."""
    sources = sorted(frame.prov.keys)
    return Counter(zip(*(frame.prov.keys[s].tolist() for s in sources), strict=True))


@dataclasses.dataclass
class Partitioned:
    manager: LesterIOManager
    pipeline: LesterPipeline
    results: list[dg.ExecuteInProcessResult]


@pytest.fixture(scope="module")
def partitioned(pipeline: LesterPipeline, tmp_path_factory: pytest.TempPathFactory) -> Partitioned:
    split = dataclasses.replace(pipeline, partitions=N)
    manager = LesterIOManager(base_path=str(tmp_path_factory.mktemp("partitioned")))
    defs = build_definitions(split, io_manager=manager)
    assets: list[Any] = [*(defs.assets or ()), *(defs.asset_checks or ())]
    instance = dg.DagsterInstance.ephemeral()
    results = []
    # every source partition first: prepared[b] reads all partitions of the other sources
    for selection in (PARTITIONED[:2], PARTITIONED[2:]):
        for bucket in BUCKETS:
            results.append(
                dg.materialize(
                    assets,
                    selection=list(selection),
                    partition_key=bucket,
                    resources=pipeline_resources(manager),
                    instance=instance,
                )
            )
    results.append(
        dg.materialize(
            assets,
            selection=list(UNPARTITIONED),
            resources=pipeline_resources(manager),
            instance=instance,
        )
    )
    return Partitioned(manager, split, results)


def test_source_partitions_hold_their_buckets(partitioned: Partitioned, run: Materialised) -> None:
    for source in ("customers", "mails"):
        whole = run.manager.load(dg.AssetKey(source))
        ids = whole.prov.keys[source]
        buckets = expected_bucket(ids)
        seen = 0
        for i, bucket in enumerate(BUCKETS):
            part = partitioned.manager.load(dg.AssetKey(source), bucket)
            assert set(part.prov.keys[source].tolist()) == set(ids[buckets == i].tolist())
            assert set(part.key_indexes[source].index.tolist()) == set(ids[buckets == i].tolist())
            seen += len(part)
        assert seen == len(whole)


def test_prepared_partitions_union_is_the_unpartitioned_result(
    partitioned: Partitioned, run: Materialised
) -> None:
    whole = run.manager.load(dg.AssetKey("complaints"))
    parts = [partitioned.manager.load(dg.AssetKey("complaints"), b) for b in BUCKETS]
    assert sum(len(p) for p in parts) == len(whole)
    union: Counter[tuple[int, ...]] = Counter()
    for i, part in enumerate(parts):
        assert (expected_bucket(part.prov.keys["customers"]) == i).all()
        union += row_set(part)
    assert union == row_set(whole)
    both = partitioned.manager.load_partitions(dg.AssetKey("complaints"), BUCKETS)
    assert row_set(both) == row_set(whole)


def test_model_trains_on_all_train_rows(partitioned: Partitioned, run: Materialised) -> None:
    train_rows = sum(len(partitioned.manager.load(dg.AssetKey("train"), b)) for b in BUCKETS)
    assert train_rows == len(run.manager.load(dg.AssetKey("train")))
    model = partitioned.manager.load(dg.AssetKey("model"))
    assert isinstance(model, TrainingState)
    assert model.X.shape[0] == train_rows
    x_test = partitioned.manager.load(dg.AssetKey("X_test"))
    test_rows = sum(len(partitioned.manager.load(dg.AssetKey("test"), b)) for b in BUCKETS)
    assert x_test.X.shape[0] == test_rows


def test_checks_pass_on_partitioned_assets(partitioned: Partitioned) -> None:
    evaluations = [c for r in partitioned.results for c in r.get_asset_check_evaluations()]
    assert evaluations
    failed = [(c.asset_key.to_user_string(), c.check_name, c.description) for c in evaluations]
    assert all(c.passed for c in evaluations), failed


def _pipeline_with(pipeline: LesterPipeline, prepare: Any) -> LesterPipeline:
    return dataclasses.replace(pipeline, prepare=prepare, partitions=N)


def test_unpartitionable_plans_raise_at_definition_time(pipeline: LesterPipeline) -> None:
    def deduplicated(customers: Frame, mails: Frame) -> Frame:
        return mails.join(customers, on="email").drop_duplicates(["email"])

    def customers_optional(customers: Frame, mails: Frame) -> Frame:
        return mails.join(customers, on="email", how="left")

    def grouped(customers: Frame, mails: Frame) -> Frame:
        counts = mails.group_by("email").agg(mails=("mail_id", "count"))
        return counts.join(customers, on="email")

    for prepare, words in (
        (deduplicated, "Distinct"),
        (customers_optional, "left join"),
    ):
        with pytest.raises(PlanError, match=words):
            build_definitions(_pipeline_with(pipeline, prepare))
    with pytest.raises(PlanError, match="group_by"):
        build_definitions(_pipeline_with(pipeline, grouped))
    # unpartitioned, the same plans are fine to define
    build_definitions(dataclasses.replace(pipeline, prepare=customers_optional))


def test_partitions_validated(pipeline: LesterPipeline) -> None:
    for bad in (-1, True, 2.5):
        with pytest.raises(PlanError, match="partitions"):
            dataclasses.replace(pipeline, partitions=bad)


# -- per-file partitions of multi-file sources --------------------------------------------------
# The running example's mails split over three csv files (mails of the ``sources`` fixture, so
# the unpartitioned ``run`` is the reference); customers stays one file.

MAIL_FILES = ("mails-2024-01.csv", "mails-2024-02.csv", "mails-2024-03.csv")
FILE_KEYS = ["mails-2024-01", "mails-2024-02", "mails-2024-03"]  # the documented key rule
ROWS = ("complaints", "train", "test")


@pytest.fixture(scope="module")
def mail_dir(sources: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mails of ``sources`` in three files of unequal size, plus a file of another
    format that a glob on ``*.csv`` must not list."""
    directory = tmp_path_factory.mktemp("mail_files")
    mails = pd.read_csv(sources[1])
    cuts = [0, len(mails) // 5, len(mails) // 2, len(mails)]
    for name, start, stop in zip(MAIL_FILES, cuts, cuts[1:], strict=False):
        mails.iloc[start:stop].to_csv(directory / name, index=False)
    (directory / "notes.txt").write_text("not a mail file\n")
    return directory


def per_file(
    pipeline: LesterPipeline,
    mails: str | Path,
    *,
    by: str = "mails",
    partitions: int = 0,
    **kw: Any,
) -> LesterPipeline:
    """``pipeline`` with mails read from ``mails`` (a glob or a directory), split by ``by``."""
    sources = dict(pipeline.sources)
    sources["mails"] = SourceSpec(mails, key="mail_id")
    split = dataclasses.replace(pipeline.split, by=by)
    return dataclasses.replace(pipeline, sources=sources, split=split, partitions=partitions, **kw)


def asset_specs(defs: dg.Definitions) -> dict[str, dg.AssetSpec]:
    return {
        spec.key.to_user_string(): spec
        for asset in defs.assets or ()
        if isinstance(asset, dg.AssetsDefinition)
        for spec in asset.specs
    }


def partition_keys(defs: dg.Definitions, key: str) -> list[str] | None:
    definition = asset_specs(defs)[key].partitions_def
    return None if definition is None else list(definition.get_partition_keys())


def materialise_stages(pipeline: LesterPipeline, base: Path) -> Partitioned:
    """Every asset, every partition: the sources, then the rows, then X, y and the model; each
    stage grouped by partitions definition (one run per partition key)."""
    manager = LesterIOManager(base_path=str(base))
    defs = build_definitions(pipeline, io_manager=manager)
    assets: list[Any] = [*(defs.assets or ()), *(defs.asset_checks or ())]
    specs = asset_specs(defs)
    instance = dg.DagsterInstance.ephemeral()
    results = []
    for stage in (tuple(pipeline.sources), ROWS, UNPARTITIONED):
        groups: dict[tuple[str, ...] | None, list[str]] = {}
        for key in stage:
            definition = specs[key].partitions_def
            keys = None if definition is None else tuple(definition.get_partition_keys())
            groups.setdefault(keys, []).append(key)
        for keys, selection in groups.items():
            for partition in keys or (None,):
                results.append(
                    dg.materialize(
                        assets,
                        selection=selection,
                        partition_key=partition,
                        resources=pipeline_resources(manager),
                        instance=instance,
                    )
                )
    return Partitioned(manager, pipeline, results)


def load_all(done: Partitioned, key: str, partitions: Sequence[str] | None) -> FrameArtifact:
    if partitions is None:
        loaded = done.manager.load(dg.AssetKey(key))
    else:
        loaded = done.manager.load_partitions(dg.AssetKey(key), list(partitions))
    assert isinstance(loaded, FrameArtifact)
    return loaded


def by_mail(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("mail_id", kind="stable").reset_index(drop=True)


def assert_same_rows(got: FrameArtifact, want: FrameArtifact) -> None:
    """Equal rows (data and provenance) up to row order."""
    pd.testing.assert_frame_equal(by_mail(got.data), by_mail(want.data))
    assert row_set(got) == row_set(want)


def assert_checks_pass(done: Partitioned) -> None:
    evaluations = [c for r in done.results for c in r.get_asset_check_evaluations()]
    assert evaluations
    failed = [(c.asset_key.to_user_string(), c.check_name, c.description) for c in evaluations]
    assert all(c.passed for c in evaluations), failed


@pytest.fixture(scope="module")
def by_mails(
    pipeline: LesterPipeline, mail_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Partitioned:
    """Split by the per-file mails: rows, train and test partitioned per file."""
    split = per_file(pipeline, str(mail_dir / "mails-*.csv"))
    return materialise_stages(split, tmp_path_factory.mktemp("by_mails"))


def test_a_multi_file_source_has_one_partition_per_file(
    pipeline: LesterPipeline, mail_dir: Path
) -> None:
    for mails in (str(mail_dir / "mails-*.csv"), mail_dir, str(mail_dir / "*.csv")):
        defs = build_definitions(per_file(pipeline, mails))
        assert partition_keys(defs, "mails") == FILE_KEYS, mails
        assert partition_keys(defs, "customers") is None
        for key in ROWS:
            assert partition_keys(defs, key) == FILE_KEYS, (mails, key)
        for key in UNPARTITIONED:
            assert partition_keys(defs, key) is None, (mails, key)


def test_each_file_partition_stores_exactly_its_file(
    by_mails: Partitioned, mail_dir: Path, run: Materialised
) -> None:
    whole = run.manager.load(dg.AssetKey("mails"))
    id_of = dict(zip(whole.data["mail_id"], whole.prov.keys["mails"], strict=True))
    for name, key in zip(MAIL_FILES, FILE_KEYS, strict=True):
        part = by_mails.manager.load(dg.AssetKey("mails"), key)
        expected = pd.read_csv(mail_dir / name)
        assert len(part) == len(expected) > 0
        pd.testing.assert_frame_equal(by_mail(part.data), by_mail(expected))
        ids = {id_of[m] for m in expected["mail_id"]}
        assert set(part.prov.keys["mails"].tolist()) == ids
        assert set(part.key_indexes["mails"].index.tolist()) == ids


def test_prepared_rows_per_file_union_is_the_unpartitioned_result(
    by_mails: Partitioned, mail_dir: Path, run: Materialised
) -> None:
    seen = 0
    for name, key in zip(MAIL_FILES, FILE_KEYS, strict=True):
        part = by_mails.manager.load(dg.AssetKey("complaints"), key)
        assert set(part.data["mail_id"]) <= set(pd.read_csv(mail_dir / name)["mail_id"])
        train = by_mails.manager.load(dg.AssetKey("train"), key)
        test = by_mails.manager.load(dg.AssetKey("test"), key)
        assert row_set(train) + row_set(test) == row_set(part)
        seen += len(part)
    union = load_all(by_mails, "complaints", FILE_KEYS)
    assert len(union) == seen
    assert_same_rows(union, run.manager.load(dg.AssetKey("complaints")))
    model = by_mails.manager.load(dg.AssetKey("model"))
    assert isinstance(model, TrainingState)
    assert model.X.shape[0] == len(load_all(by_mails, "train", FILE_KEYS))


def test_checks_pass_on_file_partitions(by_mails: Partitioned) -> None:
    assert_checks_pass(by_mails)


@pytest.mark.parametrize("buckets", [0, N])
def test_split_by_a_single_file_source_reads_every_file_partition(
    pipeline: LesterPipeline,
    mail_dir: Path,
    run: Materialised,
    tmp_path: Path,
    buckets: int,
) -> None:
    """Split by customers (one file): mails are per file and read whole by the prepared rows,
    which are unpartitioned (partitions=0) or in the customers' buckets (partitions=N)."""
    split = per_file(pipeline, mail_dir, by="customers", partitions=buckets)
    done = materialise_stages(split, tmp_path)
    defs = build_definitions(split)
    assert partition_keys(defs, "mails") == FILE_KEYS
    buckets_or_none = BUCKETS if buckets else None
    assert partition_keys(defs, "customers") == buckets_or_none
    for key in ROWS:
        assert partition_keys(defs, key) == buckets_or_none
    prepared = load_all(done, "complaints", buckets_or_none)
    assert_same_rows(prepared, run.manager.load(dg.AssetKey("complaints")))
    for i, bucket in enumerate(BUCKETS if buckets else ()):
        part = done.manager.load(dg.AssetKey("complaints"), bucket)
        assert (expected_bucket(part.prov.keys["customers"]) == i).all()
    assert_checks_pass(done)


def mails_on_the_right(customers: Frame, mails: Frame) -> Frame:
    """The example's preparation with mails on the right of a left join, unmatched rows
    filtered out: every row derives from one mail, but check_partitionable cannot see it."""
    topical = mails.filter(
        (col("date") >= START_DATE) & col("text").str.contains(TOPIC_PATTERN, case=False)
    )
    kept = customers.filter(col("country").isin(KEPT_COUNTRIES))
    return (
        kept.join(topical, on="email", how="left")
        .filter(col("mail_id").not_null())
        .with_column("title", col("subject").fill_null("").str.lower())
        .with_column("title_words", col("title").str.word_count())
        .with_column("text", col("text").fill_null("").str.lower())
        .with_column("sentiment", example.sentiment, inputs=["text"])
        .select(*example.PREPARED_COLUMNS)
    )


def test_an_unpartitionable_plan_leaves_the_rows_of_a_per_file_split_source_whole(
    pipeline: LesterPipeline,
    mail_dir: Path,
    tmp_path: Path,
    materialise_with: Callable[..., Materialised],
) -> None:
    split = per_file(pipeline, str(mail_dir / "mails-*.csv"), prepare=mails_on_the_right)
    defs = build_definitions(split)  # no error: the rows just stay unpartitioned
    assert partition_keys(defs, "mails") == FILE_KEYS
    for key in ROWS:
        assert partition_keys(defs, key) is None
    spec = asset_specs(defs)["complaints"]
    assert "left join" in str(spec.description)
    assert "left join" in str(spec.metadata["lester/partitioning"])
    done = materialise_stages(split, tmp_path / "per_file")
    whole = dataclasses.replace(split, sources=pipeline.sources)  # mails.csv, unpartitioned
    reference = materialise_with(whole, tmp_path / "whole")
    assert_same_rows(
        load_all(done, "complaints", None), reference.manager.load(dg.AssetKey("complaints"))
    )
    for key in ("train", "test"):
        assert row_set(load_all(done, key, None)) == row_set(
            reference.manager.load(dg.AssetKey(key))
        )
    assert_checks_pass(done)
    # with key-hash buckets of the split source, the same plan is an error, as before
    buckets = per_file(
        pipeline, mail_dir, by="customers", partitions=N, prepare=customers_on_the_right
    )
    with pytest.raises(PlanError, match="left join"):
        build_definitions(buckets)


def customers_on_the_right(customers: Frame, mails: Frame) -> Frame:
    return mails.join(customers, on="email", how="left")


def test_a_pattern_that_matches_nothing_names_the_pattern(
    pipeline: LesterPipeline, tmp_path: Path
) -> None:
    pattern = str(tmp_path / "mails-*.csv")
    with pytest.raises(SourceError, match=re.escape(repr(pattern))):
        build_definitions(per_file(pipeline, pattern))


def test_a_directory_without_files_of_the_format_names_the_directory(
    pipeline: LesterPipeline, tmp_path: Path
) -> None:
    (tmp_path / "mails.txt").write_text("mail_id\n1\n")
    (tmp_path / "mails.parquet").write_bytes(b"")
    with pytest.raises(SourceError, match=re.escape(repr(str(tmp_path)))):
        build_definitions(per_file(pipeline, tmp_path))


def test_files_with_the_same_partition_key_are_an_error_naming_both(
    pipeline: LesterPipeline, sources: tuple[Path, Path], tmp_path: Path
) -> None:
    mails = pd.read_csv(sources[1])
    first, second = tmp_path / "mails 2024.csv", tmp_path / "mails_2024.csv"
    mails.iloc[:10].to_csv(first, index=False)
    mails.iloc[10:20].to_csv(second, index=False)
    with pytest.raises(PlanError) as caught:
        build_definitions(per_file(pipeline, tmp_path))
    message = str(caught.value)
    assert str(first) in message and str(second) in message and "'mails_2024'" in message


def test_a_directory_of_json_lines_lists_json_and_jsonl_files(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.json", "c.csv", ".hidden.json"):
        (tmp_path / name).write_text('{"id": 1}\n')
    (tmp_path / "d.json").mkdir()  # a directory, not a file
    spec = SourceSpec(tmp_path, format="json", key="id")
    assert spec.multi_file
    files = file_partitions("events", spec)
    assert files == {"a": tmp_path / "a.json", "b": tmp_path / "b.jsonl"}


def test_file_partition_keys_follow_the_documented_rule() -> None:
    cases = {
        "mails-2024-01.csv": "mails-2024-01",
        "mails 2024.01.csv": "mails_2024_01",
        "données,[1]|x.parquet": "donn_es__1__x",
        "dir/sub/part_3.jsonl": "part_3",
    }
    for name, key in cases.items():
        assert file_partition_key(name) == key
        dg.StaticPartitionsDefinition([key])  # a valid Dagster partition key


def test_a_partition_whose_file_vanished_says_to_reload(
    pipeline: LesterPipeline, sources: tuple[Path, Path], tmp_path: Path
) -> None:
    mails = pd.read_csv(sources[1])
    for i in range(2):
        mails.iloc[i * 10 : (i + 1) * 10].to_csv(tmp_path / f"m{i}.csv", index=False)
    spec = SourceSpec(str(tmp_path / "m*.csv"), key="mail_id")
    artifact, generated = read_source("mails", spec, tmp_path / "m1.csv")
    assert len(artifact) == 10 and not generated
    with pytest.raises(PlanError, match="one at a time"):
        read_source("mails", spec)
    (tmp_path / "m1.csv").unlink()
    with pytest.raises(SourceError, match="reload the code location"):
        read_source("mails", spec, tmp_path / "m1.csv")


@pytest.mark.parametrize(("by", "partitions"), [("customers", 3), ("mails", 3), ("mails", 0)])
def test_every_job_resolves_with_mixed_partitions(
    pipeline: LesterPipeline, mail_dir: Path, by: str, partitions: int
) -> None:
    """A Dagster job holds assets of one partitions definition: a source partitioned unlike
    the prepared rows gets a job of its own, and every job (and the code location) resolves."""
    split = per_file(pipeline, mail_dir / "*.csv", by=by, partitions=partitions)
    defs = build_definitions(split)
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert f"{split.name}_job" in jobs
    main = defs.resolve_job_def(f"{split.name}_job")
    selected = {k.to_user_string() for k in main.asset_layer.selected_asset_keys}
    specs = asset_specs(defs)
    kinds = {
        str(specs[k].partitions_def.get_partition_keys()) if specs[k].partitions_def else None
        for k in selected
    } - {None}
    assert len(kinds) <= 1  # one partitions definition per job
    covered = set(selected)
    for name in jobs - {f"{split.name}_job"}:
        job = defs.resolve_job_def(name)
        if job.asset_layer is not None:
            covered |= {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert set(specs) <= covered  # every asset can be materialised by some job
