"""One size of the Figure 4 benchmark, in one process: recompute, our IVM, the baseline.

For ``customers`` customers (3 mails each, generated with seed 0):

1. **full recompute**, ``repeat`` times: materialising every asset of the running example
   through Dagster from the csv sources into a fresh store (what a user does today; the last
   store is kept), and the plain in-memory recompute (:func:`~.recompute.plain_recompute`);
2. **our IVM**, durably written: one training customer, ``batch`` training customers in one
   batch, one training mail's subject (value deletion), each :func:`apply_deletions` on the
   store; and the **Dagster path**: one more customer through :func:`submit_deletion` -> one
   tick of the deletion sensor -> the apply job in process -> the request read back applied;
3. the **prototype-style baseline** (:class:`~.baseline.PrototypeState`, in memory) on the
   same requests in the same order, starting from the stored artifacts before any deletion;
4. in the first repetition, after each request, both states against a **full recompute on
   the remaining data** (:func:`~.recompute.reference`): X entries, parameters, predictions.

Deletions accumulate (each repetition deletes other keys from the same store; the reference
removes everything deleted so far, including an unrecorded warm-up request).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lester_dagster.bench.baseline import PrototypeState
from lester_dagster.bench.measure import (
    Sample,
    file_states,
    measure,
    progress,
    run_quietly,
    written_bytes,
)
from lester_dagster.bench.recompute import (
    Deleted,
    Distance,
    Reference,
    distance,
    plain_recompute,
    reference,
    source_tables,
    state_distance,
)

__all__ = [
    "DAGSTER_PATH",
    "OURS",
    "PROTOTYPE",
    "Measured",
    "SizeRun",
    "claimed_requests",
    "data_directory",
    "request_names",
    "run_size",
]

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def data_directory(customers: int, root: Path, cache: Path | None) -> Path:
    """``customers.csv`` / ``mails.csv`` of ``write_complaints(dir, customers, seed=0)``; reused
    from ``cache`` when its stamp says the same generator wrote them (the stamp format of
    ``benchmarks/forget_durable.py``, so both share a cache)."""
    import lester_dagster.examples.complaints_data as gen

    if cache is None:
        directory = root / f"data{customers}"
        gen.write_complaints(directory, customers, seed=0)
        return directory
    digest = hashlib.sha256(Path(gen.__file__).read_bytes()).hexdigest()
    stamp = f"{customers} seed=0 generator-sha256={digest}"
    directory = cache / f"c{customers}"
    stamp_file = directory / "STAMP"
    if not (stamp_file.exists() and stamp_file.read_text() == stamp):
        progress(f"   generating {customers:,} customers into {directory} ...")
        gen.write_complaints(directory, customers, seed=0)
        stamp_file.write_text(stamp)
    return directory


def claimed_requests(
    ledger: Any, pipeline: str, source: str, batches: list[list[int]], value: bool
) -> tuple[str, list[Any]]:
    """File one request per key batch (``value``: the ``subject`` of mails) and claim them for
    one run, as the deletion sensor's run would: ``(run_id, claimed requests)``."""
    requests = [
        ledger.submit(
            pipeline,
            source,
            keys,
            kind="value" if value else "instance",
            columns=["subject"] if value else [],
            reason="bench",
        )
        for keys in batches
    ]
    run_id = f"bench-{requests[0].id}"
    ledger.claim([r.id for r in requests], run_id)
    return run_id, [ledger.get(r.id) for r in requests]


def _load(io: Any, key: Any) -> Any:
    from lester_dagster.orchestration.partitions import concat_frames
    from lester_dagster.orchestration.reach import stored_partitions

    values = [io.load(key, p) for p in stored_partitions(io, key)]
    return values[0] if len(values) == 1 else concat_frames(values)


@dataclasses.dataclass
class Measured:
    """Samples of one (approach, request) with the distance measured in the first repetition."""

    samples: list[Sample] = dataclasses.field(default_factory=list)
    distance: Distance | None = None
    stale_coef_diff: float | None = None  # the parameters before the request vs the recompute


class SizeRun:
    """Everything measured for one size (see the module docstring)."""

    def __init__(self, customers: int, partitions: int, data: Path, work: Path, batch: int) -> None:
        from lester_dagster.examples.complaints_pipeline import make_pipeline
        from lester_dagster.orchestration import build_assets
        from lester_dagster.orchestration.resources import LesterLedger

        self.customers, self.partitions, self.work, self.batch = customers, partitions, work, batch
        self.pipeline = dataclasses.replace(make_pipeline(data, customers), partitions=partitions)
        self.assets = build_assets(self.pipeline)
        self.ledger_url = f"sqlite:///{work / 'ledger.db'}"
        self.ledger = LesterLedger(url=self.ledger_url)
        self.results: dict[tuple[str, str], Measured] = {}
        self.deleted = Deleted.none()
        self.info: dict[str, Any] = {"customers": customers, "partitions": partitions}
        self.cursor: str | None = None

    def _record(self, approach: str, request: str, sample: Sample) -> None:
        self.results.setdefault((approach, request), Measured()).samples.append(sample)

    # -- 1. recompute ----------------------------------------------------------------------------
    def recompute(self, repeat: int) -> None:
        from lester_dagster.orchestration.definitions import materialize_pipeline
        from lester_dagster.orchestration.io_manager import LesterIOManager

        for r in range(repeat):
            store = self.work / f"store{r}"
            io = LesterIOManager(base_path=str(store))

            def materialise(io: LesterIOManager = io) -> Any:
                return materialize_pipeline(self.pipeline, io, self.ledger, run_config=QUIET)

            sample, runs = measure(lambda: run_quietly(materialise))
            if not all(run.success for run in runs):
                raise RuntimeError(f"materialising the pipeline failed ({store})")
            self._record("recompute (Dagster)", "full", sample)
            progress(f"   [{r + 1}/{repeat}] recompute through Dagster {sample.seconds:8.2f} s")
            if r + 1 < repeat:
                shutil.rmtree(store, ignore_errors=True)
            else:
                self.store, self.io = store, io
        self.info["store_mib"] = written_bytes(self.store) / 2**20
        for r in range(repeat):
            sample, out = measure(lambda: plain_recompute(self.pipeline))
            self._record("recompute (in memory)", "full", sample)
            progress(f"   [{r + 1}/{repeat}] recompute in memory       {sample.seconds:8.2f} s")
        self.info["train_rows"] = int(out["train_rows"])
        self.info["test_rows"] = int(out["X_test"].shape[0])

    # -- keys, the baseline's starting point -------------------------------------------------------
    def prepare_requests(self, need: int) -> tuple[list[int], list[int]]:
        """Training customers and training mails with a subject (of other customers), shuffled
        with seed 0; builds the baseline from the stored artifacts."""
        state = _load(self.io, self.assets.key("model"))
        x_test = _load(self.io, self.assets.key("X_test"))
        y_test = _load(self.io, self.assets.key("y_test"))
        test = _load(self.io, self.assets.key("test"))
        self.baseline = PrototypeState.of(
            state.features, state.y, state.frame, x_test, y_test.y, test.data, state.model
        )
        self.previous = state.unlearner.parameters(state.model)
        self.info["x_columns"] = int(state.X.shape[1])
        self.info["baseline_step"] = self.baseline.step_size()
        # the stored training rows with every prepared column (the state keeps only those its
        # updates read: not the subject, which only a stateless encoder reads)
        train = _load(self.io, self.assets.key("train")).data
        rng = np.random.default_rng(0)
        customers = np.array(train["customer_id"].drop_duplicates().to_numpy())
        rng.shuffle(customers)
        if len(customers) // 2 < need:
            raise ValueError(
                f"{self.customers:,} customers give {len(customers) // 2} training customers "
                f"to delete, the run needs {need}; use more --customers or a smaller --repeat"
            )
        chosen = customers[: len(customers) // 2]
        with_subject = train[(train["title"].str.len() > 0) & ~train["customer_id"].isin(chosen)]
        mails = np.array(with_subject["mail_id"].drop_duplicates().to_numpy())
        rng.shuffle(mails)
        self.tables = source_tables(self.pipeline)
        return [int(c) for c in chosen], [int(m) for m in mails]

    # -- 2. our IVM --------------------------------------------------------------------------------
    def apply(self, source: str, batches: list[list[int]], value: bool) -> Sample:
        from lester_dagster.orchestration.forgetting import apply_deletions
        from lester_dagster.store.ledger import Ledger

        with Ledger(self.ledger_url) as ledger:
            run_id, requests = claimed_requests(ledger, self.pipeline.name, source, batches, value)
            before = file_states(self.store)
            sample, report = measure(
                lambda: apply_deletions(
                    self.pipeline, self.assets, self.io, requests, run_id=run_id
                )
            )
            ledger.mark_applied([r.id for r in requests], run_id, report.timings)
        sample.extra["touched_mib"] = written_bytes(self.store, before) / 2**20
        keys = [k for batch in batches for k in batch]
        if value:
            self.deleted.add_values(source, "subject", keys)
        else:
            self.deleted.add_records(source, keys)
        return sample

    def dagster_path(self, customer: int) -> Sample:
        import dagster as dg

        from lester_dagster.orchestration import IO_MANAGER_KEY, build_definitions
        from lester_dagster.orchestration.deletions import apply_job_name, sensor_name
        from lester_dagster.orchestration.resources import LEDGER_KEY
        from lester_dagster.orchestration.submit import submit_deletion
        from lester_dagster.store.ledger import Ledger

        if not hasattr(self, "defs"):
            self.defs = build_definitions(self.pipeline, io_manager=self.io, ledger=self.ledger)
            home = self.work / "dagster_home"
            home.mkdir(exist_ok=True)
            self.instance = dg.DagsterInstance.local_temp(str(home))

        def path() -> str:
            with Ledger(self.ledger_url) as ledger:
                request = submit_deletion(
                    self.pipeline, ledger, "customers", [customer], reason="bench",
                    io_manager=self.io,
                )  # fmt: skip
            sensor = self.defs.resolve_sensor_def(sensor_name(self.pipeline.name))
            context = dg.build_sensor_context(
                instance=self.instance,
                cursor=self.cursor,
                definitions=self.defs,
                resources={IO_MANAGER_KEY: self.io, LEDGER_KEY: self.ledger},
            )
            tick = sensor.evaluate_tick(context)
            (run,) = tick.run_requests or []
            self.cursor = tick.cursor
            job = self.defs.resolve_job_def(apply_job_name(self.pipeline.name))
            done = job.execute_in_process(
                run_config={**run.run_config, **QUIET},
                instance=self.instance,
                tags=run.tags,
                raise_on_error=True,
            )
            with Ledger(self.ledger_url) as ledger:
                status = ledger.get(request.id).status
            if not done.success or status != "applied":
                raise RuntimeError(f"the Dagster path left request {request.id} {status}")
            return status

        before = file_states(self.store)
        sample, _ = measure(lambda: run_quietly(path))
        sample.extra["touched_mib"] = written_bytes(self.store, before) / 2**20
        self.deleted.add_records("customers", [customer])
        return sample

    # -- 3./4. the baseline and the distances ------------------------------------------------------
    def baseline_step(self, source: str, keys: list[int], value: bool) -> Sample:
        if value:
            call: Callable[[], int] = lambda: self.baseline.forget_values(source, keys, ["subject"])  # noqa: E731
        else:
            call = lambda: self.baseline.forget(source, keys)  # noqa: E731
        sample, _ = measure(call)
        return sample

    def distances(self, request: str, ours: str, theirs: str) -> None:
        """Both states after ``request`` against a recompute on the remaining data."""
        began = time.perf_counter()
        ref: Reference = reference(self.pipeline, self.tables, self.deleted)
        state = _load(self.io, self.assets.key("model"))
        x_test = _load(self.io, self.assets.key("X_test"))
        b = self.baseline
        stale = max(
            float(np.abs(np.asarray(self.previous[k]) - v).max(initial=0.0))
            for k, v in ref.parameters.items()
        )
        mine = self.results.setdefault((ours, request), Measured())
        mine.distance = state_distance(ref, state, x_test)
        mine.stale_coef_diff = stale
        other = self.results.setdefault((theirs, request), Measured())
        other.distance = distance(
            ref, b.X, b.prov, b.parameters(), b.X_test, b.prov_test, b.predict_test()
        )
        other.stale_coef_diff = stale
        self.previous = ref.parameters
        progress(
            f"      distances to a recompute ({time.perf_counter() - began:.1f} s): coef ours "
            f"{mine.distance.coef_max_diff:.1e} / prototype-style "
            f"{other.distance.coef_max_diff:.1e} / no update {stale:.1e}; X ours "
            f"{mine.distance.x_max_diff:.1e} / prototype-style {other.distance.x_max_diff:.1e}"
        )


OURS, DAGSTER_PATH, PROTOTYPE = "ours (IVM, durable)", "ours (Dagster path)", "prototype-style"


def request_names(batch: int) -> tuple[str, str, str]:
    return "1 instance", f"{batch} instances (batch)", "1 value"


def run_size(
    customers: int,
    *,
    repeat: int,
    batch: int,
    partitions: int,
    root: Path,
    data_cache: Path | None,
) -> SizeRun:
    """Measure one size (see the module docstring); the run's store is deleted at the end."""
    progress(f"== {customers:,} customers (partitions={partitions})")
    data = data_directory(customers, root, data_cache)
    work = root / f"c{customers}p{partitions}"
    work.mkdir(parents=True, exist_ok=True)
    run = SizeRun(customers, partitions, data, work, batch)
    run.recompute(repeat)
    pool, mails = run.prepare_requests(need=1 + repeat * (batch + 2))
    if len(mails) < repeat:
        raise ValueError(
            f"{customers:,} customers give only {len(mails)} training mails with a subject; "
            "use more --customers"
        )
    customer_of, mail_of = iter(pool), iter(mails)
    one, many, value = request_names(batch)
    progress("   warm-up request (not recorded)")
    warm = [next(customer_of)]
    run.apply("customers", [warm], value=False)
    run.baseline.forget("customers", warm)
    for r in range(repeat):
        for request, source, keys, is_value in (
            (one, "customers", [next(customer_of)], False),
            (many, "customers", [next(customer_of) for _ in range(batch)], False),
            (value, "mails", [next(mail_of)], True),
        ):
            batches = [keys] if is_value or request == one else [[k] for k in keys]
            ours = run.apply(source, batches, value=is_value)
            run._record(OURS, request, ours)
            theirs = run.baseline_step(source, keys, is_value)
            run._record(PROTOTYPE, request, theirs)
            progress(
                f"   [{r + 1}/{repeat}] {request:<22} ours {ours.seconds * 1000:9.1f} ms "
                f"(peak +{ours.peak_increase_mib:,.0f} MiB, wrote "
                f"{ours.extra['touched_mib']:,.1f} MiB), prototype-style "
                f"{theirs.seconds * 1000:8.1f} ms"
            )
            if r == 0:
                run.distances(request, OURS, PROTOTYPE)
        customer = next(customer_of)
        sample = run.dagster_path(customer)
        run._record(DAGSTER_PATH, one, sample)
        run.baseline.forget("customers", [customer])  # keep the baseline on the same data
        progress(f"   [{r + 1}/{repeat}] Dagster path: forget -> applied {sample.seconds:.2f} s")
    shutil.rmtree(work, ignore_errors=True)
    return run
