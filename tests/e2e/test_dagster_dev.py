"""``dagster dev`` on this repository: launch the running example's job through GraphQL, wait
for success, read materialisation metadata back, and (with Debian's chromium) render the asset
graph headless. Every process started here is stopped (its process group), always."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lester_dagster.examples.complaints import prepare

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
STARTUP_SECONDS = 60
RUN_SECONDS = 90
ASSETS = ("customers", "mails", "complaints", "train", "test", "X_train", "y_train", "model")

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
STATUS = "query Status($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
METADATA = """
query Metadata($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on JsonMetadataEntry { jsonString }
          ... on TextMetadataEntry { text }
          ... on TableColumnLineageMetadataEntry {
            lineage { columnName columnDeps { assetKey { path } columnName } }
          }
        }
      }
    }
  }
}"""
LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on RepositoryLocation { repositories { name } }
                        ... on PythonError { message } } } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    home: Path
    data: Path
    log: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            self.url + "/graphql", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            doc = json.loads(response.read())
        assert "errors" not in doc, doc["errors"]
        data: dict[str, Any] = doc["data"]
        return data


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the process group we started: SIGINT (dagster dev shuts its children down), then
    SIGKILL whatever is left of the group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=15)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("dagster_dev")
    home, data, log = root / "home", root / "data", root / "dagster_dev.log"
    home.mkdir()
    dagster = Path(sys.executable).parent / "dagster"
    executable = str(dagster) if dagster.exists() else shutil.which("dagster")
    assert executable, "the dagster command is not installed next to this Python"
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LESTER_COMPLAINTS_DATA": str(data),
        "LESTER_COMPLAINTS_CUSTOMERS": "300",
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [executable, "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,  # workspace.yaml
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    try:
        server = Server(f"http://127.0.0.1:{port}", home, data, log)
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"dagster dev exited ({process.returncode}):\n{log.read_text()}")
            with contextlib.suppress(OSError, AssertionError, KeyError, TypeError):
                entries = server.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"dagster dev did not load the code location:\n{log.read_text()}")
            time.sleep(1)
        yield server
    finally:
        _stop(process)


def _metadata(server: Server, key: str) -> tuple[str, dict[str, Any]]:
    asset = server.graphql(METADATA, {"key": {"path": [key]}})["assetOrError"]
    events = asset["assetMaterializations"]
    assert events, f"{key} has no materialisation"
    return events[0]["runId"], {e["label"]: e for e in events[0]["metadataEntries"]}


@pytest.fixture(scope="module")
def run_id(server: Server) -> str:
    location = server.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"][0]
    repository = location["locationOrLoadError"]["repositories"][0]["name"]
    params = {
        "selector": {
            "repositoryLocationName": location["name"],
            "repositoryName": repository,
            "jobName": "complaints_job",
        },
        # one process for all steps keeps the test fast; the UI default is multiprocess
        "runConfigData": {"execution": {"config": {"in_process": {}}}},
    }
    launched = server.graphql(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id: str = launched["run"]["runId"]
    deadline = time.monotonic() + RUN_SECONDS
    status = None
    while time.monotonic() < deadline:
        status = server.graphql(STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS", f"run {run_id} ended {status}:\n{server.log.read_text()[-4000:]}"
    return run_id


def test_launched_run_materialises_the_example_with_metadata(server: Server, run_id: str) -> None:
    customers, mails = server.data / "customers.csv", server.data / "mails.csv"
    assert customers.exists() and mails.exists()  # generated by the source assets
    expected = len(prepare(customers, mails).execute())
    materialised_by, meta = _metadata(server, "complaints")
    assert materialised_by == run_id
    assert meta["dagster/row_count"]["intValue"] == expected
    lineage = {
        entry["columnName"]: {
            (dep["assetKey"]["path"][0], dep["columnName"]) for dep in entry["columnDeps"]
        }
        for entry in meta["dagster/column_lineage"]["lineage"]
    }
    assert lineage["email"] == {("customers", "email"), ("mails", "email")}
    assert lineage["sentiment"] == {("mails", "text")}
    provenance = json.loads(meta["lester/provenance"]["jsonString"])
    assert provenance["rows_per_source"] == {"mails": expected, "customers": expected}
    assert "lester/ledger_watermark" in meta
    _, x_meta = _metadata(server, "X_train")
    ranges = json.loads(x_meta["lester/column_ranges"]["jsonString"])
    assert set(ranges) == {"title", "text", "title_words", "country"}
    # the artifacts went to the default base path under DAGSTER_HOME
    for key in ASSETS:
        assert (server.home / "lester" / "artifacts" / key / "manifest.json").exists(), key


def test_asset_graph_renders_in_a_headless_browser(
    server: Server, run_id: str, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium); browser part skipped")
    profile = tmp_path / "profile"
    screenshot = tmp_path / "asset_graph.png"
    url = f"{server.url}/locations/definitions/asset-groups/complaints"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1600,1000", "--virtual-time-budget=20000",
    ]  # fmt: skip
    for mode in (["--dump-dom"], [f"--screenshot={screenshot}"]):
        process = subprocess.Popen(
            [str(CHROMIUM), *flags, *mode, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            out, _ = process.communicate(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        if mode == ["--dump-dom"]:
            dom = out.decode("utf-8", "replace")
            missing = [name for name in ASSETS if name not in dom]
            assert not missing, f"the asset graph page does not show {missing}"
    assert screenshot.exists() and screenshot.stat().st_size > 0


FORGET_SECONDS = 120


def test_forget_job_and_the_daemon_sensor_apply_a_deletion(server: Server, run_id: str) -> None:
    """File a request through ``forget_job`` (as from the launchpad); the daemon's deletion
    sensor launches the IVM run, which marks the request applied."""
    from lester_dagster.store.ledger import Ledger

    customers = server.data / "customers.csv"
    first_customer = int(customers.read_text().splitlines()[1].split(",")[0])
    location = server.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"][0]
    repository = location["locationOrLoadError"]["repositories"][0]["name"]
    params = {
        "selector": {
            "repositoryLocationName": location["name"],
            "repositoryName": repository,
            "jobName": "forget_job",
        },
        "runConfigData": {
            "ops": {
                "file_deletion_request": {
                    "config": {
                        "source": "customers",
                        "keys": [str(first_customer)],
                        "reason": "e2e test",
                    }
                }
            }
        },
    }
    started = time.monotonic()
    launched = server.graphql(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    ledger_url = f"sqlite:///{server.home / 'lester' / 'ledger.db'}"
    status = None
    deadline = started + FORGET_SECONDS
    while time.monotonic() < deadline:
        if (server.home / "lester" / "ledger.db").exists():
            with Ledger(ledger_url) as ledger:
                requests = ledger.all("complaints")
            if requests:
                status = requests[0].status
                if status in ("applied", "rejected"):
                    break
        time.sleep(1)
    took = time.monotonic() - started
    assert status == "applied", (
        f"request ended {status} after {took:.0f} s:\n" + (server.log.read_text()[-4000:])
    )
    with Ledger(ledger_url) as ledger:
        (request,) = ledger.all("complaints")
    assert request.verification is not None and request.verification["ok"]
    applied_by, meta = _metadata(server, "customers")
    assert applied_by == request.run_id  # the IVM run's materialisation is the latest
    assert json.loads(meta["lester/requests_applied"]["jsonString"]) == [request.id]
    print(f"forget_job -> sensor -> IVM run -> applied in {took:.1f} s")
