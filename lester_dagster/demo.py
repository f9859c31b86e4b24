"""``lester-dagster demo``: the running example end to end on Dagster, with proof.

1. generate the example's data (customers and their complaint mails) in ``<home>/data``;
2. materialise every asset into a local Dagster instance (``<home>/dagster``, embedded SQLite
   storage) with artifacts in ``<home>/artifacts`` and the ledger in ``<home>/ledger.db``;
3. trace one customer through the prepared rows (row provenance and column lineage);
4. file two deletion requests: the customer (instance deletion) and the leaked subject of
   another customer's mail (value deletion);
5. evaluate the deletion sensor and run the IVM job it requests (in process);
6. check: the ledger marks both requests applied with a passing verification, and every
   artifact equals a full recompute (a rematerialisation, which applies the ledger when it
   reads the source files, into ``<home>/recompute``);
7. print a summary: rows, assets, IVM time vs full recompute time, verification result.

The exit code is 0 only if everything verified.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, TextIO

import dagster as dg
import pandas as pd

from lester_dagster.errors import LesterError
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.examples.complaints_pipeline import make_pipeline
from lester_dagster.frame import Result
from lester_dagster.orchestration import (
    LesterIOManager,
    LesterLedger,
    build_assets,
    build_definitions,
    job_name,
    pipeline_resources,
    submit_deletion,
)
from lester_dagster.orchestration.compare import compare_stores
from lester_dagster.orchestration.deletions import apply_job_name, apply_op_name, sensor_name

__all__ = ["pick_customer", "run_demo", "trace_lines"]

MARKER = ".lester-demo"
_OWNED = ("data", "artifacts", "dagster", "recompute", "ledger.db")


def pick_customer(result: Result) -> int:
    """The customer that reaches the most prepared rows (smallest id among ties)."""
    if len(result) == 0:
        raise ValueError("the prepared data is empty: generate more rows (--rows)")
    counts = result.to_pandas()["customer_id"].value_counts()
    best = counts[counts == counts.max()].index.min()
    return int(best)


def trace_lines(result: Result, source: str, key: object) -> list[str]:
    """A readable lineage trace of one source record through ``result``."""
    rows = result.lineage.forward(source, [key])
    data = result.to_pandas()
    lines = [f"{source} {key!r} reaches {len(rows)} prepared row(s):"]
    for r in rows:
        rec = data.iloc[r]
        title = str(rec["title"])[:38]
        lines.append(
            f"  row {r:>5}: mail {rec['mail_id']:>7}  {rec['date']}  {title!r:<42} "
            f"sentiment {float(rec['sentiment']):+.2f}"
        )
        lines.append(f"             provenance {result.lineage.polynomial(r)}")
    lines.append("output column <- source columns:")
    width = max(len(c) for c in result.columns)
    for column in result.columns:
        refs = sorted(str(ref) for ref in result.lineage.columns(column))
        lines.append(f"  {column:<{width}} <- {', '.join(refs) or '(constant)'}")
    return lines


def _prepare_home(home: Path) -> None:
    """Start from a clean demo home; refuse to clear a directory the demo did not create."""
    home.mkdir(parents=True, exist_ok=True)
    marker = home / MARKER
    leftovers = [p.name for p in home.iterdir() if p.name != MARKER and p.name not in _OWNED]
    if leftovers and not marker.exists():
        raise LesterError(
            f"{home} holds {sorted(leftovers)[:5]} and is not a demo home (no {MARKER} "
            "file); pass an empty directory or a previous demo's home with --home"
        )
    for name in _OWNED:
        path = home / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    marker.write_text("created by lester-dagster demo; its contents are rewritten each run\n")


def _materialise(defs: dg.Definitions, name: str, instance: dg.DagsterInstance) -> Any:
    result = defs.resolve_job_def(name).execute_in_process(instance=instance)
    if not result.success:  # pragma: no cover - raise_on_error raises first
        raise LesterError(f"materialising {name} failed")
    return result


def _leaked_mail(train: pd.DataFrame, customer: int) -> int:
    """A mail with a subject, of another customer (the 'leaked secret' of the story)."""
    candidates = train[(train["customer_id"] != customer) & (train["title"].str.len() > 0)]
    if candidates.empty:
        raise LesterError("no other mail with a subject in the training data: use more --rows")
    return int(candidates["mail_id"].min())


def run_demo(home: Path, *, customers: int, seed: int, out: TextIO) -> int:
    """Run the demo in ``home``; returns the exit code (0 when everything verified)."""
    home = Path(home)
    _prepare_home(home)

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    say(f"lester-dagster demo: running example with {customers:,} customers in {home}")
    started = time.perf_counter()
    write_complaints(home / "data", customers, seed=seed)
    say(f"  generated customers.csv and mails.csv in {time.perf_counter() - started:.2f} s")

    pipeline = make_pipeline(home / "data", customers, seed=seed)
    io = LesterIOManager(base_path=str(home / "artifacts"))
    ledger = LesterLedger(url=f"sqlite:///{home / 'ledger.db'}")
    defs = build_definitions(pipeline, io_manager=io, ledger=ledger)
    built = build_assets(pipeline)
    (home / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(home / "dagster"))

    say("\n[1] materialise every asset (Dagster, local instance, embedded SQLite storage)")
    started = time.perf_counter()
    result = _materialise(defs, job_name(pipeline), instance)
    full_seconds = time.perf_counter() - started
    rows: dict[str, int] = {}
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        count = meta.get("dagster/row_count")
        rows[event.asset_key.to_user_string()] = int(count.value) if count is not None else -1
    say(f"  {len(rows)} assets in {full_seconds:.2f} s: "
        + ", ".join(f"{k} {v:,}" for k, v in rows.items()))  # fmt: skip

    prepared = io.load(built.key("prepared")).to_result()
    train = io.load(built.key("train"))
    customer = pick_customer(train.to_result())
    say("\n[2] lineage trace")
    for line in trace_lines(prepared, "customers", customer):
        say("  " + line)

    mail = _leaked_mail(train.data, customer)
    say(f"\n[3] file deletion requests: customer {customer} (all their data) and the subject "
        f"of mail {mail} (a leaked value)")  # fmt: skip
    submitted = time.perf_counter()
    with ledger.open() as book:
        forget_customer = submit_deletion(
            pipeline, book, "customers", [customer], reason="demo: right to be forgotten",
            requested_by="lester-dagster demo", io_manager=io,
        )  # fmt: skip
        forget_subject = submit_deletion(
            pipeline, book, "mails", [mail], columns=["subject"],
            reason="demo: a secret leaked into a mail subject", requested_by="lester-dagster demo",
            io_manager=io,
        )  # fmt: skip
    ids = [forget_customer.id, forget_subject.id]
    say(f"  requests {ids} are pending")

    say(f"\n[4] sensor {sensor_name(pipeline.name)} -> run {apply_job_name(pipeline.name)}")
    sensor = defs.resolve_sensor_def(sensor_name(pipeline.name))
    tick = sensor.evaluate_tick(
        dg.build_sensor_context(
            instance=instance, definitions=defs, resources=pipeline_resources(io, ledger)
        )
    )
    requests = list(tick.run_requests or [])
    if len(requests) != 1:
        say(f"  the sensor requested {len(requests)} runs: {tick.skip_message}")
        return 1
    request = requests[0]
    targets = request.run_config["ops"][apply_op_name(pipeline.name)]["config"]["targets"]
    say(f"  the sensor batched requests {request.tags['lester/requests']} and targets "
        f"{len(targets)} artifacts: {', '.join(targets)}")  # fmt: skip
    run = defs.resolve_job_def(apply_job_name(pipeline.name)).execute_in_process(
        run_config=request.run_config, instance=instance, tags=request.tags
    )
    latency = time.perf_counter() - submitted
    with ledger.open() as book:
        applied = [book.get(i) for i in ids]
    timings = dict(applied[0].timings)
    ivm_seconds = float(timings.pop("total", float("nan")))
    say(f"  run {run.run_id[:8]}: {'success' if run.success else 'FAILED'}; requests "
        + ", ".join(f"#{r.id} {r.status}" for r in applied))  # fmt: skip
    for label, seconds in timings.items():
        say(f"    {label:<28} {seconds * 1000:8.1f} ms")
    verification = applied[0].verification or {}
    for name, strategy in (verification.get("strategies") or {}).items():
        say(f"    strategy {name:<36} {strategy}")

    say("\n[5] proof: every artifact against a full recompute without the deleted data")
    recompute = LesterIOManager(base_path=str(home / "recompute"))
    recompute_defs = build_definitions(pipeline, io_manager=recompute, ledger=ledger)
    started = time.perf_counter()
    _materialise(recompute_defs, job_name(pipeline), dg.DagsterInstance.ephemeral())
    recompute_seconds = time.perf_counter() - started
    comparison = compare_stores(built, io, recompute)
    for line in comparison.lines():
        say("  " + line)
    ledger_ok = all(r.status == "applied" for r in applied) and bool(verification.get("ok"))
    say(f"  ledger verification (no row derived from a deleted record, no deleted value "
        f"stored): {'ok' if ledger_ok else 'FAILED'}")  # fmt: skip

    ok = run.success and ledger_ok and comparison.ok
    say("\nsummary")
    say(f"  customers {customers:,}; prepared rows {rows.get('complaints', 0):,}; training rows "
        f"{rows.get('train', 0):,}; assets {len(rows)}")  # fmt: skip
    say(f"  IVM of 2 requests through every artifact, durably written: {ivm_seconds * 1000:.0f} ms")
    say(f"  request to applied through the Dagster path (sensor tick + run): {latency:.2f} s")
    say(f"  full recompute from the sources: {recompute_seconds:.2f} s "
        f"({recompute_seconds / ivm_seconds:,.0f}x the IVM time)")  # fmt: skip
    say(f"verification: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1
