"""Durable forgetting in the running example: deletion requests applied by IVM to every stored
artifact, against rematerialising the pipeline from its sources.

For each size (customers; 3 mails each) and partitioning (0: unpartitioned, N: N key-hash
buckets), in one process:

* ``full recompute``: materialise every asset of the pipeline once through Dagster
  (``dagster.materialize`` per stage and partition, as tests/orchestration do), from the csv
  sources to the stored model, X and y. This is the baseline a deletion would cost without IVM.
* ``1 instance``: :func:`apply_deletions` for one request deleting one training customer;
* ``100 instance (batch)``: one call applying 100 requests, one training customer each;
* ``1 value``: one request deleting the subject of one training mail (value deletion);
* ``dagster path``: :func:`submit_deletion` (the ``forget`` path, checked against the stored
  source table) -> one tick of ``<pipeline>_deletion_sensor`` -> ``<pipeline>_apply_deletions``
  run with ``execute_in_process`` (apply, verify, mark applied) -> the request's status read
  back as ``applied``; end to end.

Every repetition deletes other keys from the same store (deletions accumulate; the store is not
copied), and every commit is durable (fsync of files and directories, atomic manifest). Requests
applied directly with :func:`apply_deletions` are then marked applied in the ledger (outside
the timing), so the sensor only sees its own request.

What is measured per call, besides wall time: the ApplyReport's per-artifact seconds
(compute + durable write of each committed artifact), and a load / write / compute split from
wrapping ``LesterIOManager.load`` / ``.store`` (class attributes, patched here only): load time
with its file reads and checksum verification (sha256; xxh3 for row segments), write time
with its fsyncs, compute = the rest.
Peak RSS during the call comes from Linux's VmHWM, reset before each call
(``/proc/self/clear_refs``); both columns are whole-process RSS.

BLAS/OpenMP pinned to one thread (threadpoolctl; also set OPENBLAS_NUM_THREADS=1).

    python benchmarks/forget_durable.py [--customers 10000 100000] [--partitions 0 16]
        [--repeat 3] [--quick] [--profile] [--data-cache DIR] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import dataclasses
import io as _io
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the definitions/ code location (not an installed package)

from lester_dagster.bench.measure import code_version, reset_peak, rss_mib  # noqa: E402
from lester_dagster.bench.report import read_csv  # noqa: E402
from lester_dagster.bench.runner import claimed_requests, data_directory  # noqa: E402

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
KINDS = ("1 instance", "100 instance (batch)", "1 value", "dagster path")


# -- instrumentation -----------------------------------------------------------------------------
class Probe:
    """Accumulates seconds spent in wrapped functions (load, store and their parts)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.loads: dict[str, float] = defaultdict(float)  # per asset label

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.loads.clear()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - began
                self.calls[name] += 1

        return wrapped


@contextlib.contextmanager
def instrumented(probe: Probe) -> Iterator[None]:
    """Patch LesterIOManager.load/.store, the store's file reads, sha256 checks and os.fsync
    to time them (restored on exit)."""
    import lester_dagster.store.manifest as manifest_mod
    from lester_dagster.orchestration.io_manager import LesterIOManager

    original_load, original_store = LesterIOManager.load, LesterIOManager.store
    original_read = getattr(manifest_mod, "read_bytes")  # noqa: B009 (not re-exported)
    original_check = getattr(manifest_mod, "_check")  # noqa: B009
    original_fsync = os.fsync

    def load(self: Any, asset_key: Any, partition_key: str | None = None) -> Any:
        began = time.perf_counter()
        try:
            return original_load(self, asset_key, partition_key)
        finally:
            spent = time.perf_counter() - began
            probe.seconds["load"] += spent
            probe.calls["load"] += 1
            label = asset_key.to_user_string()
            probe.loads[label if partition_key is None else f"{label}[*]"] += spent

    def store(self: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return original_store(self, *args, **kwargs)
        finally:
            probe.seconds["store"] += time.perf_counter() - began
            probe.calls["store"] += 1

    LesterIOManager.load = load  # type: ignore[method-assign]
    LesterIOManager.store = store  # type: ignore[method-assign]
    setattr(manifest_mod, "read_bytes", probe.wrap("read_bytes", original_read))  # noqa: B010
    setattr(manifest_mod, "_check", probe.wrap("sha256_verify", original_check))  # noqa: B010
    os.fsync = probe.wrap("fsync", original_fsync)
    try:
        yield
    finally:
        LesterIOManager.load = original_load  # type: ignore[method-assign]
        LesterIOManager.store = original_store  # type: ignore[method-assign]
        setattr(manifest_mod, "read_bytes", original_read)  # noqa: B010
        setattr(manifest_mod, "_check", original_check)  # noqa: B010
        os.fsync = original_fsync


# -- data and materialisation --------------------------------------------------------------------
def materialise_all(pipeline: Any, store: Path, ledger: Any) -> Any:
    """Every asset of ``pipeline``, every partition (``materialize_pipeline``)."""
    from lester_dagster.orchestration.definitions import materialize_pipeline
    from lester_dagster.orchestration.io_manager import LesterIOManager

    manager = LesterIOManager(base_path=str(store))
    results = materialize_pipeline(pipeline, manager, ledger, run_config=QUIET)
    assert all(r.success for r in results)
    return manager


def _store_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.rglob("*") if p.is_file())


def _make_pipeline() -> Callable[..., Any]:
    """The running example's ``make_pipeline(directory, customers)``."""
    try:
        from lester_dagster.examples.complaints_pipeline import make_pipeline
    except ImportError:
        from definitions.complaints import make_pipeline
    return make_pipeline


# -- one size ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Sample:
    kind: str
    seconds: float
    report: dict[str, float]
    probe: dict[str, float]
    loads: dict[str, float]
    peak_rss_mib: float
    rss_before_mib: float
    commits: int
    phases: dict[str, float] = dataclasses.field(default_factory=dict)


class Bench:
    def __init__(self, customers: int, partitions: int, data: Path, work: Path) -> None:
        from lester_dagster.orchestration import build_assets
        from lester_dagster.orchestration.resources import LesterLedger

        self.customers, self.partitions, self.work = customers, partitions, work
        self.pipeline = dataclasses.replace(
            _make_pipeline()(data, customers), partitions=partitions
        )
        self.assets = build_assets(self.pipeline)
        self.ledger_url = f"sqlite:///{work / 'ledger.db'}"
        self.ledger_resource = LesterLedger(url=self.ledger_url)
        self.probe = Probe()
        self.store = work / "store"

    def materialise(self) -> float:
        began = time.perf_counter()
        self.io = materialise_all(self.pipeline, self.store, self.ledger_resource)
        return time.perf_counter() - began

    def keys(self, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """Training customers (shuffled) and training mails with a subject (shuffled), each
        mail of a customer other than the chosen customers."""
        from lester_dagster.orchestration.partitions import concat_frames
        from lester_dagster.orchestration.reach import stored_partitions

        key = self.assets.key("train")
        train = concat_frames([self.io.load(key, p) for p in stored_partitions(self.io, key)])
        customers = np.array(train.data["customer_id"].drop_duplicates().to_numpy())
        rng.shuffle(customers)
        with_subject = train.data[train.data["title"].str.len() > 0]
        half = len(customers) // 2
        mails = with_subject[~with_subject["customer_id"].isin(customers[:half])]
        mail_ids = np.array(mails["mail_id"].drop_duplicates().to_numpy())
        rng.shuffle(mail_ids)
        self.train_rows = len(train)
        return [int(c) for c in customers[:half]], [int(m) for m in mail_ids]

    def _measure(self, kind: str, call: Callable[[], Any]) -> tuple[Sample, Any]:
        self.probe.reset()
        rss_before = rss_mib("VmRSS")
        reset_peak()
        began = time.perf_counter()
        with instrumented(self.probe):
            out = call()
        seconds = time.perf_counter() - began
        peak = rss_mib("VmHWM")
        return Sample(
            kind, seconds, {}, dict(self.probe.seconds), dict(self.probe.loads), peak, rss_before, 0
        ), out

    def apply(self, kind: str, source: str, batches: list[list[int]], value: bool) -> Sample:
        from lester_dagster.orchestration.forgetting import apply_deletions
        from lester_dagster.store.ledger import Ledger

        with Ledger(self.ledger_url) as ledger:
            run_id, requests = claimed_requests(ledger, self.pipeline.name, source, batches, value)
            sample, report = self._measure(
                kind,
                lambda: apply_deletions(
                    self.pipeline, self.assets, self.io, requests, run_id=run_id
                ),
            )
            ledger.mark_applied([r.id for r in requests], run_id, report.timings)
        sample.report = dict(report.timings)
        sample.commits = len(report.commits)
        return sample

    def dagster_path(self, customer: int) -> Sample:
        import dagster as dg

        from lester_dagster.orchestration import IO_MANAGER_KEY, build_definitions
        from lester_dagster.orchestration.deletions import apply_job_name, sensor_name
        from lester_dagster.orchestration.resources import LEDGER_KEY
        from lester_dagster.orchestration.submit import submit_deletion
        from lester_dagster.store.ledger import Ledger

        if not hasattr(self, "defs"):
            self.defs = build_definitions(
                self.pipeline, io_manager=self.io, ledger=self.ledger_resource
            )
            home = self.work / "dagster_home"
            home.mkdir(exist_ok=True)
            self.instance = dg.DagsterInstance.local_temp(str(home))
            self.cursor: str | None = None
        phases: dict[str, float] = {}
        state: dict[str, Any] = {}

        def path() -> None:
            t0 = time.perf_counter()
            with Ledger(self.ledger_url) as ledger:
                request = submit_deletion(
                    self.pipeline,
                    ledger,
                    "customers",
                    [customer],
                    reason="bench",
                    io_manager=self.io,
                )
            t1 = time.perf_counter()
            sensor = self.defs.resolve_sensor_def(sensor_name(self.pipeline.name))
            context = dg.build_sensor_context(
                instance=self.instance,
                cursor=self.cursor,
                definitions=self.defs,
                resources={IO_MANAGER_KEY: self.io, LEDGER_KEY: self.ledger_resource},
            )
            tick = sensor.evaluate_tick(context)
            (run,) = tick.run_requests or []
            self.cursor = tick.cursor
            t2 = time.perf_counter()
            job = self.defs.resolve_job_def(apply_job_name(self.pipeline.name))
            config = {**run.run_config, **QUIET}  # console logger quiet; the event log is kept
            done = job.execute_in_process(
                run_config=config, instance=self.instance, tags=run.tags, raise_on_error=True
            )
            t3 = time.perf_counter()
            with Ledger(self.ledger_url) as ledger:
                applied = ledger.get(request.id)
            t4 = time.perf_counter()
            assert done.success and applied.status == "applied", applied.status
            phases.update(submit=t1 - t0, sensor_tick=t2 - t1, run=t3 - t2, status=t4 - t3)
            state["applied"] = applied

        sample, _ = self._measure("dagster path", path)
        applied = state["applied"]
        sample.report = {k: float(v) for k, v in applied.timings.items()}
        sample.phases = phases
        sample.phases["run: apply_deletions"] = float(applied.timings.get("total", 0.0))
        sample.phases["run: verify"] = float(applied.verification.get("seconds", 0.0))
        sample.commits = len(applied.timings) - 1
        return sample


def _run_size(
    customers: int, partitions: int, args: argparse.Namespace, root: Path
) -> tuple[dict[str, Any], list[Sample]]:
    data = data_directory(customers, root, args.data_cache)
    work = Path(tempfile.mkdtemp(prefix=f"c{customers}p{partitions}-", dir=root))
    bench = Bench(customers, partitions, data, work)
    print(f"== {customers:,} customers, partitions={partitions}: materialising ...", flush=True)
    reset_peak()
    recompute = bench.materialise()
    materialise_peak = rss_mib("VmHWM")
    print(f"   full recompute (materialise all) {recompute:.2f} s", flush=True)
    rng = np.random.default_rng(0)
    pool, mails = bench.keys(rng)
    need = args.repeat * (1 + args.batch + 1) + 1 + int(args.profile)
    if len(pool) < need:
        raise SystemExit(
            f"only {len(pool)} training customers for {need} deletions; lower --repeat or --batch"
        )
    take = iter(pool)
    mail_iter = iter(mails)
    samples: list[Sample] = []
    # warm-up (imports, first Dagster definitions), not recorded
    bench.apply("warm-up", "customers", [[next(take)]], value=False)
    for r in range(args.repeat):
        for sample in (
            bench.apply("1 instance", "customers", [[next(take)]], value=False),
            bench.apply(
                "100 instance (batch)",
                "customers",
                [[next(take)] for _ in range(args.batch)],
                value=False,
            ),
            bench.apply("1 value", "mails", [[next(mail_iter)]], value=True),
            bench.dagster_path(next(take)),
        ):
            samples.append(sample)
            print(
                f"   [{r + 1}/{args.repeat}] {sample.kind:<22} {sample.seconds * 1000:9.1f} ms "
                f"(load {sample.probe.get('load', 0) * 1000:.0f}, write "
                f"{sample.probe.get('store', 0) * 1000:.0f}, {sample.commits} commits, "
                f"peak RSS {sample.peak_rss_mib:,.0f} MiB)",
                flush=True,
            )
    if args.profile:
        _profile(bench, next(take), next(mail_iter), args.out, customers, partitions, args.quick)
    info = {
        "customers": customers,
        "partitions": partitions,
        "train_rows": bench.train_rows,
        "recompute_s": recompute,
        "materialise_peak_rss_mib": materialise_peak,
        "store_mib": _store_bytes(bench.store) / 2**20,
        "repeat": args.repeat,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "python": sys.version.split()[0],
        "code": code_version(),
    }
    shutil.rmtree(work, ignore_errors=True)
    return info, samples


def _profile(
    bench: Bench, customer: int, mail: int, out: Path, customers: int, partitions: int, quick: bool
) -> None:
    """cProfile of one more 1-request apply_deletions per kind (a customer, a mail subject):
    the hotspot table and the top functions, to ``forget_durable_profile_c<N>_p<P>.md``."""
    from lester_dagster.orchestration.forgetting import apply_deletions
    from lester_dagster.store.ledger import Ledger

    text = _io.StringIO()
    text.write(
        f"# cProfile of apply_deletions, {customers:,} customers, partitions={partitions}\n\n"
        f"Code {code_version()}, {time.strftime('%Y-%m-%d')}; one more request after the "
        "timed repetitions, same store; wall time under the profiler (slower than without).\n"
    )
    for kind, source, key, columns in (
        ("1 instance deletion (a training customer)", "customers", customer, []),
        ("1 value deletion (a training mail's subject)", "mails", mail, ["subject"]),
    ):
        with Ledger(bench.ledger_url) as ledger:
            request = ledger.submit(
                bench.pipeline.name,
                source,
                [key],
                kind="value" if columns else "instance",
                columns=columns,
                reason="profile",
            )
            ledger.claim(request.id, f"bench-profile-{request.id}")
            request = ledger.get(request.id)
            profiler = cProfile.Profile()
            began = time.perf_counter()
            profiler.enable()
            report = apply_deletions(
                bench.pipeline, bench.assets, bench.io, [request], run_id=f"bench-{request.id}"
            )
            profiler.disable()
            wall = time.perf_counter() - began
            ledger.mark_applied(request.id, f"bench-profile-{request.id}", report.timings)
        listing = _io.StringIO()
        stats = pstats.Stats(profiler, stream=listing)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
        text.write(
            f"\n## {kind}: {wall * 1000:,.0f} ms\n\n```\n{_hotspots(stats)}```\n\n"
            f"<details><summary>cProfile listing</summary>\n\n```\n{listing.getvalue()}```\n"
            "</details>\n"
        )
    suffix = "_quick" if quick else ""
    path = out / f"forget_durable_profile_c{customers}_p{partitions}{suffix}.md"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(text.getvalue())
    print(f"   profile -> {path}", flush=True)


_UNIQUE_HASH = "<built-in method numpy._core._multiarray_umath._unique_hash>"
# (label, file suffix, function name): cumulative time of these functions in the profile
HOTSPOTS = (
    ("apply_deletions (total)", "orchestration/forgetting.py", "apply_deletions"),
    (
        "  key_indexes_for (loads a source partition per source)",
        "orchestration/forgetting.py",
        "key_indexes_for",
    ),
    ("  LOAD: LesterIOManager.load", "orchestration/io_manager.py", "load"),
    ("    read file bytes", "store/atomic.py", "read_bytes"),
    ("    checksum verification (sha256 / xxh3)", "store/manifest.py", "_check"),
    ("    parquet decode (pyarrow read_table)", "store/tables.py", "read_parquet"),
    ("    arrow -> pandas (frame_of_table)", "store/tables.py", "frame_of_table"),
    ("    provenance decode", "store/artifacts.py", "_prov"),
    ("    key index decode", "store/artifacts.py", "_key_indexes"),
    ("    row segments assembled", "store/segments.py", "assemble"),
    ("    object load (TrainingState, pickle 5)", "store/pickling.py", "load_parts"),
    ("    npz load (X)", "scipy/sparse/_matrix_io.py", "load_npz"),
    ("  WRITE: LesterIOManager.store", "orchestration/io_manager.py", "store"),
    ("    object dump (TrainingState, pickle 5)", "store/pickling.py", "collect"),
    ("    row segments cut, sliced, fingerprinted", "store/segments.py", "encode"),
    ("    X's dense columns taken apart", "store/segmented.py", "_split"),
    ("    text compressed (lz4)", "~", "<built-in method lz4.block._block.compress>"),
    ("    pandas -> arrow (table_of_frame)", "store/tables.py", "table_of_frame"),
    ("    parquet encode+write", "store/tables.py", "write_parquet"),
    ("    npz save (X)", "scipy/sparse/_matrix_io.py", "save_npz"),
    ("    sha256 while writing (HASH.update)", "~", "<method 'update' of '_hashlib.HASH' objects>"),
    ("    fsync (files + directories)", "~", "<built-in method posix.fsync>"),
    ("    syncfs (a version's files at once)", "store/atomic.py", "_sync_files"),
    ("    manifest commit (atomic rename, GC)", "store/atomic.py", "commit"),
    ("  phase sources (incl. its loads/commits)", "orchestration/forgetting.py", "sources"),
    ("  phase prepared (incl. its loads/commits)", "orchestration/forgetting.py", "prepared"),
    ("    deletion rules (plan built on all sources)", "orchestration/forgetting.py", "rules"),
    ("    concat_frames", "orchestration/partitions.py", "concat_frames"),
    ("  phase train/test (incl. loads/commits)", "orchestration/forgetting.py", "split"),
    ("  phase training: TrainingState update", "orchestration/forgetting.py", "training"),
    ("    TrainingState.forget_rows", "ivm/training.py", "forget_rows"),
    ("    TrainingState.replace_rows", "ivm/training.py", "replace_rows"),
    ("    TrainingState._reencode_rows", "ivm/training.py", "_reencode_rows"),
    ("      csr_matrix.tolil", "scipy/sparse/_csr.py", "tolil"),
    ("    model newton_solve", "models/objective.py", "newton_solve"),
    ("      inverse_hessian", "models/objective.py", "inverse_hessian"),
    ("  phase test: X_test, y_test (incl. load/commit)", "orchestration/forgetting.py", "test"),
    ("    reencode_matrix", "ivm/training.py", "reencode_matrix"),
    ("cross-cutting (inside the lines above):", "", "<none>"),
    ("  key_indexes_to_store (restricts key indexes)", "store/keys.py", "key_indexes_to_store"),
    ("  forget_in_source", "orchestration/artifacts.py", "forget_in_source"),
    ("  np.setdiff1d", "numpy/lib/_arraysetops_impl.py", "setdiff1d"),
    ("  np.unique (its hash step, numpy 2.x)", "~", _UNIQUE_HASH),
    ("  ndarray.searchsorted", "~", "<method 'searchsorted' of 'numpy.ndarray' objects>"),
    ("  ndarray.sort", "~", "<method 'sort' of 'numpy.ndarray' objects>"),
    ("  pandas Index.is_unique", "pandas/core/indexes/base.py", "is_unique"),
    ("  rows_mentioning (provenance scans)", "ivm/frames.py", "rows_mentioning"),
    ("  row_identity (provenance hashing)", "ivm/frames.py", "row_identity"),
)


def _hotspots(stats: pstats.Stats) -> str:
    """Cumulative seconds (and share of apply_deletions) of the functions in HOTSPOTS; nested
    entries are parts of the entry above them (a function called under several parents is
    counted once, wherever it runs)."""
    table = stats.stats  # type: ignore[attr-defined]
    total = None
    lines = ["Hotspots (cumulative time; indented = part of the line above):", ""]
    for label, suffix, name in HOTSPOTS:
        cum, calls = 0.0, 0
        for (filename, _line, func), (_cc, nc, _tt, ct, _callers) in table.items():
            if func == name and filename.replace("\\", "/").endswith(suffix):
                cum += ct
                calls += nc
        if total is None:
            total = cum or 1.0
        if name == "<none>":
            lines.append(label)
        elif calls:
            lines.append(f"{label:<62} {cum * 1000:9.1f} ms {cum / total:6.1%}  ({calls} calls)")
    return "\n".join(lines) + "\n\n"


# -- output --------------------------------------------------------------------------------------
TARGETS = {"1 instance": 0.1, "100 instance (batch)": 0.3, "1 value": 0.1, "dagster path": 5.0}


def _summary(info: dict[str, Any], samples: list[Sample]) -> list[dict[str, Any]]:
    rows = []
    for kind in KINDS:
        mine = [s for s in samples if s.kind == kind]
        if not mine:
            continue
        t = [s.seconds for s in mine]
        med = statistics.median(t)

        def med_of(get: Callable[[Sample], float], mine: list[Sample] = mine) -> float:
            return statistics.median(get(s) for s in mine)

        load = med_of(lambda s: s.probe.get("load", 0.0))
        store = med_of(lambda s: s.probe.get("store", 0.0))
        rows.append(
            {
                "customers": info["customers"],
                "partitions": info["partitions"],
                "train_rows": info["train_rows"],
                "request": kind,
                "n": len(mine),
                "median_ms": round(med * 1000, 1),
                "min_ms": round(min(t) * 1000, 1),
                "max_ms": round(max(t) * 1000, 1),
                "load_ms": round(load * 1000, 1),
                "read_ms": round(med_of(lambda s: s.probe.get("read_bytes", 0.0)) * 1000, 1),
                "verify_ms": round(med_of(lambda s: s.probe.get("sha256_verify", 0.0)) * 1000, 1),
                "write_ms": round(store * 1000, 1),
                "fsync_ms": round(med_of(lambda s: s.probe.get("fsync", 0.0)) * 1000, 1),
                "compute_ms": round(
                    med_of(
                        lambda s: s.seconds - s.probe.get("load", 0.0) - s.probe.get("store", 0.0)
                    )
                    * 1000,
                    1,
                ),
                "commits": int(med_of(lambda s: s.commits)),
                "peak_rss_mib": round(max(s.peak_rss_mib for s in mine)),
                "rss_before_mib": round(med_of(lambda s: s.rss_before_mib)),
                "recompute_s": round(info["recompute_s"], 2),
                "speedup": round(info["recompute_s"] / med, 1),
                "target_ms": TARGETS[kind] * 1000,
                "met": med <= TARGETS[kind],
                "phases": "; ".join(
                    f"{k} {statistics.median(s.phases.get(k, 0.0) for s in mine) * 1000:.0f}"
                    for k in (mine[0].phases or {})
                ),
            }
        )
    return rows


def _by_asset(timings: dict[str, float]) -> dict[str, float]:
    """Per-artifact seconds with partitions summed per asset (``asset[*]``)."""
    out: dict[str, float] = defaultdict(float)
    for label, seconds in timings.items():
        out[label.split("[")[0] + "[*]" if "[" in label else label] += seconds
    return dict(out)


def _artifact_rows(info: dict[str, Any], samples: list[Sample]) -> list[dict[str, Any]]:
    """Median seconds per committed artifact (ApplyReport.timings) and per loaded asset."""
    out = []
    for kind in KINDS:
        mine = [s for s in samples if s.kind == kind]
        for what, get in (("commit", lambda s: _by_asset(s.report)), ("load", lambda s: s.loads)):
            labels = sorted({k for s in mine for k in get(s)})
            for label in labels:
                values = [get(s).get(label, 0.0) for s in mine]
                out.append(
                    {
                        "customers": info["customers"],
                        "partitions": info["partitions"],
                        "request": kind,
                        "what": what,
                        "artifact": label,
                        "median_ms": round(statistics.median(values) * 1000, 2),
                    }
                )
    return out


def _save_csvs(
    out: Path,
    stem: str,
    infos: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    artifacts: list[dict[str, Any]],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for suffix, table in (("", rows), ("_artifacts", artifacts), ("_sizes", infos)):
        with open(out / f"{stem}{suffix}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)


def render(out: Path, stem: str) -> str:
    """The Markdown report of the CSVs ``<stem>{,_sizes,_artifacts}.csv`` in ``out``
    (written to ``<stem>.md``)."""
    infos = read_csv(out / f"{stem}_sizes.csv")
    rows = read_csv(out / f"{stem}.csv")
    artifacts = read_csv(out / f"{stem}_artifacts.csv")
    run = infos[0]
    best: dict[int, float] = {}
    for i in infos:
        best[i["customers"]] = min(best.get(i["customers"], i["recompute_s"]), i["recompute_s"])
    lines = [
        f"Running example, durable IVM of deletion requests through every stored artifact vs "
        f"materialising the whole pipeline (Dagster, from the csv sources). {run['date']}, "
        f"{run['machine']}, python {run['python']}, 1 BLAS thread, code {run['code']}; "
        f"median of {run['repeat']} (min-max), each on other keys of the same store "
        "(deletions accumulate). load / write = inside LesterIOManager.load / .store (write "
        "includes fsync), compute = the rest; peak RSS = whole process during the call "
        "(VmHWM reset before it; "
        "the process keeps what earlier steps allocated, so + over RSS before is the better "
        "measure of the call's own memory). vs recompute: the "
        "full materialisation with the same partitioning / the fastest one (unpartitioned).",
        "",
        "| customers | partitions | train rows | full recompute s | recompute peak RSS MiB "
        "| store MiB |",
        "|---|---|---|---|---|---|",
    ]
    for i in infos:
        lines.append(
            f"| {i['customers']:,} | {i['partitions']} | {i['train_rows']:,} "
            f"| {i['recompute_s']:.2f} | {i['materialise_peak_rss_mib']:,.0f} "
            f"| {i['store_mib']:,.0f} |"
        )
    lines += [
        "",
        "| customers | partitions | request | time ms (min-max) | load ms (read / checksums) "
        "| write ms (fsync) | compute ms | commits | vs recompute (same / best) | target "
        "| peak RSS MiB (+ over RSS before) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = (
            f"{r['target_ms'] / 1000:g} s" if r["target_ms"] >= 1000 else f"{r['target_ms']:g} ms"
        )
        vs_best = best[r["customers"]] * 1000 / r["median_ms"]
        lines.append(
            f"| {r['customers']:,} | {r['partitions']} | {r['request']} "
            f"| {r['median_ms']:,} ({r['min_ms']:,}-{r['max_ms']:,}) "
            f"| {r['load_ms']:,} ({r['read_ms']:,} / {r['verify_ms']:,}) "
            f"| {r['write_ms']:,} ({r['fsync_ms']:,}) | {r['compute_ms']:,} | {r['commits']} "
            f"| {r['speedup']:,}x / {vs_best:,.1f}x "
            f"| {target} {'met' if r['met'] else '**missed**'} "
            f"| {r['peak_rss_mib']:,} (+{r['peak_rss_mib'] - r['rss_before_mib']:,}) |"
        )
    dag = [r for r in rows if r["request"] == "dagster path"]
    if dag:
        lines += [
            "",
            "Dagster path, median ms per phase (run = job.execute_in_process, of "
            "which apply_deletions and verification as recorded in the ledger):",
            "",
        ]
        lines += [
            f"- {r['customers']:,} customers, partitions={r['partitions']}: {r['phases']}"
            for r in dag
        ]
    one = [a for a in artifacts if a["request"] == "1 instance"]
    if one:
        lines += [
            "",
            "1 instance deletion, median ms per artifact (commit = compute + durable "
            "write, from ApplyReport.timings; load = LesterIOManager.load; partitions of "
            "an asset summed as [*]):",
            "",
        ]
        for info in infos:
            mine = [
                a
                for a in one
                if a["customers"] == info["customers"] and a["partitions"] == info["partitions"]
            ]
            commits = ", ".join(
                f"{a['artifact']} {a['median_ms']:g}" for a in mine if a["what"] == "commit"
            )
            loads = ", ".join(
                f"{a['artifact']} {a['median_ms']:g}" for a in mine if a["what"] == "load"
            )
            lines.append(
                f"- {info['customers']:,} / p={info['partitions']}: commits: {commits}"
                f"; loads: {loads}"
            )
    text = "\n".join(lines) + "\n"
    (out / f"{stem}.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--partitions",
        type=int,
        nargs="+",
        default=[0],
        help="0: unpartitioned; N: N key-hash buckets (several: each is run)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="requests in the batch case")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI (seconds)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile one 1-request apply per size (text file in --out)",
    )
    parser.add_argument(
        "--data-cache",
        type=Path,
        default=None,
        help="reuse generated csvs here (stamped with the generator's hash)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite the Markdown from the CSVs already in --out",
    )
    args = parser.parse_args()
    if args.render:
        print(render(args.out, "forget_durable_quick" if args.quick else "forget_durable"))
        return
    if args.quick:
        args.customers, args.partitions, args.repeat, args.batch = [600], [0, 2], 1, 5
    import logging
    import warnings

    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    logging.getLogger("dagster").setLevel(logging.WARNING)

    infos, rows, artifacts = [], [], []
    with tempfile.TemporaryDirectory(prefix="forget_durable-") as tmp, threadpool_limits(limits=1):
        root = Path(tmp)
        os.environ["LESTER_HOME"] = str(root / "lester_home")  # never the user's home
        os.environ.pop("DAGSTER_HOME", None)
        for customers in args.customers:
            for partitions in args.partitions:
                info, samples = _run_size(customers, partitions, args, root)
                infos.append(info)
                rows.extend(_summary(info, samples))
                artifacts.extend(_artifact_rows(info, samples))
    stem = "forget_durable_quick" if args.quick else "forget_durable"
    _save_csvs(args.out, stem, infos, rows, artifacts)
    print(render(args.out, stem))


if __name__ == "__main__":
    main()
