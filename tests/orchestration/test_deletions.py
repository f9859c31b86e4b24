"""The Dagster path of a deletion: ledger -> sensor -> IVM run -> artifacts equal the oracle,
only the affected partitions rematerialised, requests marked applied only after every commit;
a run killed between two commits leaves each artifact before or after, and a re-run completes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from definitions.complaints import make_pipeline
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.orchestration import IO_MANAGER_KEY, build_assets, build_definitions
from lester_dagster.orchestration.deletions import (
    REQUESTS_TAG,
    apply_job_name,
    apply_op_name,
    sensor_name,
)
from lester_dagster.orchestration.forgetting import FAULT_ENV
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.orchestration.reach import stored_partitions
from lester_dagster.orchestration.resources import LEDGER_KEY, LesterLedger
from lester_dagster.orchestration.verify import verify_assets
from lester_dagster.store.ledger import Ledger

from .test_forgetting import (
    CUSTOMERS,
    _copy_sources,
    _mails_with_subject,
    _oracle,
    _train_customers,
    assert_equal_to_oracle,
    materialise_all,
)


@dataclasses.dataclass
class Setup:
    pipeline: LesterPipeline
    io: LesterIOManager
    ledger_url: str
    defs: dg.Definitions
    instance: dg.DagsterInstance
    data: Path
    tmp: Path

    def ledger(self) -> Ledger:
        return Ledger(self.ledger_url)

    def tick(self, cursor: str | None = None) -> Any:
        sensor = self.defs.resolve_sensor_def(sensor_name(self.pipeline.name))
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=cursor,
            definitions=self.defs,
            resources={IO_MANAGER_KEY: self.io, LEDGER_KEY: LesterLedger(url=self.ledger_url)},
        )
        return sensor.evaluate_tick(context)

    def run(self, run_config: dict[str, Any], tags: dict[str, str] | None = None) -> Any:
        job = self.defs.resolve_job_def(apply_job_name(self.pipeline.name))
        return job.execute_in_process(
            run_config=run_config, instance=self.instance, tags=tags, raise_on_error=False
        )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    customers, _ = write_complaints(tmp_path_factory.mktemp("data"), CUSTOMERS, seed=11)
    return customers.parent


def _setup(data: Path, tmp: Path, partitions: int) -> Setup:
    pipeline = dataclasses.replace(
        make_pipeline(_copy_sources(data, tmp / "ivm_data"), CUSTOMERS), partitions=partitions
    )
    io = materialise_all(pipeline, tmp / "ivm_store")
    url = f"sqlite:///{tmp / 'ledger.db'}"
    defs = build_definitions(pipeline, io_manager=io, ledger=LesterLedger(url=url))
    (tmp / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp / "dagster_home"))
    return Setup(pipeline, io, url, defs, instance, data, tmp)


def _materialised(result: Any) -> set[tuple[str, str | None]]:
    return {
        (e.asset_key.to_user_string(), e.partition)
        for e in result.get_asset_materialization_events()
    }


def _partitions_with_customer(io: LesterIOManager, key: str, customer: int) -> set[str | None]:
    """Independently of provenance: the partitions whose rows hold the customer's id (or, for
    mails, its email)."""
    out: set[str | None] = set()
    for partition in stored_partitions(io, dg.AssetKey(key)):
        frame = io.load(dg.AssetKey(key), partition).data
        if "customer_id" in frame and (frame["customer_id"] == customer).any():
            out.add(partition)
    return out


def test_sensor_requests_one_run_for_the_affected_partitions_only(
    data: Path, tmp_path: Path
) -> None:
    s = _setup(data, tmp_path, partitions=4)
    (customer,) = _train_customers(s.io, 1)
    customers_before = _partitions_with_customer(s.io, "customers", customer)
    prepared_before = _partitions_with_customer(s.io, "complaints", customer)
    with s.ledger() as ledger:
        request = ledger.submit(s.pipeline.name, "customers", [customer], reason="test")
    result = s.tick()
    (run,) = result.run_requests
    assert run.tags[REQUESTS_TAG] == str(request.id)
    assert result.cursor == str(request.id)
    targets = run.run_config["ops"][apply_op_name(s.pipeline.name)]["config"]["targets"]
    assert {t for t in targets if t.startswith("customers[")} == {
        f"customers[{p}]" for p in customers_before
    }

    done = s.run(run.run_config, run.tags)
    assert done.success
    materialised = _materialised(done)
    assert {p for k, p in materialised if k == "customers"} == customers_before
    assert {p for k, p in materialised if k == "complaints"} == prepared_before
    assert len(prepared_before) == 1 and len(customers_before) == 1  # one bucket of four
    assert {"model", "X_train", "y_train"} <= {k for k, _ in materialised}
    assert {f"{k}[{p}]" if p else k for k, p in materialised} <= set(targets)

    with s.ledger() as ledger:
        applied = ledger.get(request.id)
    assert applied.status == "applied"
    assert applied.run_id == done.run_id
    assert applied.verification is not None and applied.verification["ok"] is True
    assert applied.timings["total"] > 0
    # the cursor makes the sensor exactly-once
    again = s.tick(result.cursor)
    assert not again.run_requests and again.skip_message
    assert_equal_to_oracle(s.io, _oracle(s.pipeline, data, tmp_path, drop_customers=[customer]))


def test_two_batches_and_an_insert_while_a_run_is_going_on(data: Path, tmp_path: Path) -> None:
    s = _setup(data, tmp_path, partitions=0)
    customers = _train_customers(s.io, 3)
    mails = _mails_with_subject(s.io, 2)
    with s.ledger() as ledger:
        first = ledger.submit(s.pipeline.name, "customers", customers[:1])
    tick = s.tick()
    (run_1,) = tick.run_requests
    with s.ledger() as ledger:  # filed after the tick, before the run: the next batch
        second = ledger.submit(s.pipeline.name, "customers", customers[1:])
        third = ledger.submit(s.pipeline.name, "mails", mails, kind="value", columns=["subject"])
    assert s.run(run_1.run_config).success
    tick_2 = s.tick(tick.cursor)
    (run_2,) = tick_2.run_requests
    assert run_2.tags[REQUESTS_TAG] == f"{second.id},{third.id}"
    assert s.run(run_2.run_config).success
    with s.ledger() as ledger:
        assert [ledger.get(r.id).status for r in (first, second, third)] == ["applied"] * 3
        requests = [ledger.get(r.id) for r in (first, second, third)]
    assert verify_assets(build_assets(s.pipeline), s.io, requests).ok
    oracle = _oracle(s.pipeline, data, tmp_path, drop_customers=customers, null_subjects=mails)
    assert_equal_to_oracle(s.io, oracle)

    # deleted data never comes back: a full rematerialisation from the unchanged source files
    # applies the ledger when reading them
    again = materialise_all(s.pipeline, tmp_path / "again", LesterLedger(url=s.ledger_url))
    assert_equal_to_oracle(again, oracle)


def test_a_failed_run_releases_its_requests_and_a_rerun_completes(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _setup(data, tmp_path, partitions=0)
    customers = _train_customers(s.io, 1)
    with s.ledger() as ledger:
        request = ledger.submit(s.pipeline.name, "customers", customers)
    (run,) = s.tick().run_requests

    from lester_dagster.orchestration import forgetting

    original = forgetting._Run.commit
    calls = {"n": 0}

    def failing(self: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full (test)")
        original(self, *args, **kwargs)

    monkeypatch.setattr(forgetting._Run, "commit", failing)
    failed = s.run(run.run_config)
    assert not failed.success
    with s.ledger() as ledger:
        back = ledger.get(request.id)
    assert back.status == "pending" and "disk full" in (back.status_reason or "")
    monkeypatch.setattr(forgetting._Run, "commit", original)
    rerun = s.run(run.run_config)
    assert rerun.success
    with s.ledger() as ledger:
        assert ledger.get(request.id).status == "applied"
    assert_equal_to_oracle(s.io, _oracle(s.pipeline, data, tmp_path, drop_customers=customers))


_CHILD = textwrap.dedent(
    """
    import sys, dagster as dg, dataclasses
    from pathlib import Path
    from definitions.complaints import make_pipeline
    from lester_dagster.orchestration import build_definitions
    from lester_dagster.orchestration.io_manager import LesterIOManager
    from lester_dagster.orchestration.resources import LEDGER_KEY, LesterLedger
    from lester_dagster.orchestration.deletions import apply_job_name
    import json
    data, base, url, home, customers, config = sys.argv[1:7]
    pipeline = make_pipeline(Path(data), int(customers))
    defs = build_definitions(
        pipeline, io_manager=LesterIOManager(base_path=base), ledger=LesterLedger(url=url)
    )
    job = defs.resolve_job_def(apply_job_name(pipeline.name))
    instance = dg.DagsterInstance.local_temp(home)
    job.execute_in_process(run_config=json.loads(config), instance=instance)
    """
)


def test_kill_between_two_commits_then_rerun(data: Path, tmp_path: Path) -> None:
    import json

    s = _setup(data, tmp_path, partitions=0)
    customers = _train_customers(s.io, 2)
    with s.ledger() as ledger:
        request = ledger.submit(s.pipeline.name, "customers", customers)
    (run,) = s.tick().run_requests
    env = {**os.environ, FAULT_ENV: "3"}
    child = subprocess.run(
        [
            sys.executable, "-c", _CHILD, str(s.tmp / "ivm_data"), str(s.io.base_path),
            s.ledger_url, str(s.tmp / "dagster_home"), str(CUSTOMERS),
            json.dumps(run.run_config),
        ],
        env=env, cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert child.returncode == 137, child.stderr[-2000:]
    with s.ledger() as ledger:
        stuck = ledger.get(request.id)
    assert stuck.status == "running"  # never marked applied too early
    # every artifact is before or after the request: the first three committed, the rest not
    for key in ("customers", "complaints", "train"):
        assert _partitions_with_customer(s.io, key, customers[0]) == set(), key
    state = s.io.load(dg.AssetKey("model"))
    assert (state.frame["customer_id"] == customers[0]).any()  # not yet forgotten
    assert state.X.shape[0] == s.io.load(dg.AssetKey("X_train")).shape[0]
    # the dead run is reported failed (what run monitoring or "terminate" in the UI does)
    dead = s.instance.get_run_by_id(stuck.run_id or "")
    assert dead is not None
    s.instance.report_run_failed(dead)
    rerun = s.run(run.run_config)
    assert rerun.success
    with s.ledger() as ledger:
        assert ledger.get(request.id).status == "applied"
    assert_equal_to_oracle(s.io, _oracle(s.pipeline, data, tmp_path, drop_customers=customers))


def test_a_run_shows_the_row_segments_each_commit_wrote_and_linked(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The materialisations of the IVM run say how many row segments each commit wrote and
    how many it hard-linked; the written ones are exactly the new files of the store."""
    from lester_dagster.store import segments

    monkeypatch.setattr(segments, "SEGMENT_ROWS", 4)  # several segments even for ~40 rows
    s = _setup(data, tmp_path, partitions=0)
    store = tmp_path / "ivm_store"
    (customer,) = _train_customers(s.io, 1)
    started = time.time_ns()
    with s.ledger() as ledger:
        ledger.submit(s.pipeline.name, "customers", [customer], reason="test")
    (run,) = s.tick().run_requests
    done = s.run(run.run_config, run.tags)
    assert done.success
    events = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in done.get_asset_materialization_events()
    }
    written = sum(m["lester/segments_written"].value for m in events.values())
    # files written by the run (a link keeps its file's modification time; inode numbers of
    # collected files are reused, so they do not tell new files apart)
    files = [p for p in store.rglob("*.bin") if segments.ADDRESSED.search(p.name)]
    new = {st.st_ino for p in files if (st := p.stat()).st_mtime_ns >= started}
    assert written == len(new) > 0
    x_train = events["X_train"]
    assert 0 < x_train["lester/segments_written"].value < x_train["lester/segments_linked"].value
    assert x_train["lester/segment_bytes_written"].value > 0
    # the model state's X is X_train's: linked, not written again
    model = events["model"]
    assert model["lester/segments_linked"].value > model["lester/segments_written"].value
