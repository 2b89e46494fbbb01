"""A real Prefect server, a process worker and the two deployments, end to end (slow; runs in CI).

Starts ``prefect server start`` on a free loopback port (SQLite under a temp PREFECT_HOME, telemetry
off), registers ``train-eval/default`` and ``vocab-refresh/hourly`` with ``flows/deployments.py``
(the refresh on a short interval instead of its hourly cron), starts ``prefect worker start``,
then triggers runs the way ``prefect deployment run`` does (``run_deployment``: a flow run created
from the deployment through the API, picked up by the worker):

1. ``train-eval`` with the quick profile on a copy of this project (its own DVC workspace, data/
   and SQLite registry under tmp): Completed, metrics and a published model in the registry;
2. ``vocab-refresh``: the vocabulary file's labels are embedded with that model;
3. a label appended to the vocabulary file afterwards is embedded by a run the *schedule* created;

then stops everything it started and checks that no process is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow

REFRESH_INTERVAL_S = 20  # the test's schedule of vocab-refresh (hourly cron in real use)
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_project(dst: Path) -> Path:
    """This project's files (tracked + untracked, not ignored; no data/, no caches) as a DVC workspace."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, out.split("\0")):
        src = REPO_ROOT / rel
        if rel == "dvc.lock" or not src.is_file():  # a fresh workspace: DVC decides everything anew
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)
    (dst / ".dvc").mkdir(exist_ok=True)
    (dst / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")  # no git repo here
    return dst


def descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


class Stack:
    """The processes this test starts (server, worker), each in its own session; stopped in reverse."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env = env
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.seen: set = set()  # every descendant ever observed (flow-run processes included)

    def start(self, name: str, *cmd: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def observe(self) -> None:
        for _, p in self.procs:
            self.seen.update(descendants(p.pid))

    def stop(self) -> list[str]:
        """SIGINT, then SIGTERM, then SIGKILL each process group; returns leftovers that had to be killed."""
        import psutil

        self.observe()
        for _name, proc in reversed(self.procs):
            for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                if proc.poll() is not None:
                    break
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    pass
        leftovers = []
        for p in self.seen:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    leftovers.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
                    p.kill()
            except psutil.NoSuchProcess:
                pass
        return leftovers

    def tail(self, name: str, n: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_bytes()[-n:].decode(errors="replace") if path.exists() else ""


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prefect server not healthy at {url} after {timeout} s")


def test_prefect_server_deployments_schedule_end_to_end(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from ovc.registry import latest_model_version, list_vocabularies, load_embedding_matrix, open_registry

    t_start = time.monotonic()
    project = copy_project(tmp_path / "project")
    vocab_dir = project / "vocabularies"
    vocab_dir.mkdir(exist_ok=True)
    (vocab_dir / "retail.txt").write_text("red circle\nblue square moving left\taction\n")
    registry_url = f"sqlite:///{project / 'data' / 'registry.db'}"  # the project's default registry
    home = tmp_path / "prefect-home"
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "DVC_NO_ANALYTICS": "1",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # pick up runs quickly (default 10 s)
        "PREFECT_LOGGING_LEVEL": "INFO",
        "OVC_REGISTRY_URL": registry_url,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("OVC_PARAMS", None)
    logs = tmp_path / "logs"
    logs.mkdir()
    stack = Stack(env, logs)
    try:
        server = stack.start(
            "server", str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)
        )
        wait_healthy(api, server)
        t_server = time.monotonic() - t_start

        reg = subprocess.run(
            [
                sys.executable,
                str(project / "flows" / "deployments.py"),
                "--project-dir",
                str(project),
                "--refresh-interval",
                str(REFRESH_INTERVAL_S),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert reg.returncode == 0, reg.stdout + reg.stderr
        assert "train-eval/default" in reg.stdout and "vocab-refresh/hourly" in reg.stdout
        with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_LOCAL_STORAGE_PATH: home / "storage"}):
            with get_client(sync_client=True) as client:
                refresh_deployment = client.read_deployment_by_name("vocab-refresh/hourly")
                assert refresh_deployment.schedules and refresh_deployment.schedules[0].active
                # hold the schedule while train-eval runs (2 CPU cores); resumed for step 3
                client.pause_deployment(refresh_deployment.id)
            refresh_filter = DeploymentFilter(id=DeploymentFilterId(any_=[refresh_deployment.id]))
            stack.start("worker", str(BIN / "prefect"), "worker", "start", "--pool", "ovc-local")

            # 1. train-eval, quick profile: the flow run `prefect deployment run train-eval/default -p quick=true` creates
            run = run_deployment("train-eval/default", parameters={"quick": True}, timeout=1200, poll_interval=2)
            stack.observe()
            assert run.state.is_completed(), f"{run.state}\n{stack.tail('worker')}"
            result = run.state.result()  # persisted JSON result, read back through the API's metadata
            assert result["project_dir"] == str(project)
            statuses = {s["stage"]: s["status"] for s in result["stages"]}
            assert statuses and set(statuses.values()) == {"ran"}, statuses
            assert "evaluate" in statuses and "publish" in statuses
            metrics = json.loads((project / "data" / "eval" / "metrics.json").read_text())
            assert result["metrics"] == metrics
            assert result["results_md"] and "| Method |" in result["results_md"]
            assert any(p.endswith(".png") for p in result["plots"])
            engine = open_registry(url=registry_url)
            mv = latest_model_version(engine)
            assert mv is not None and mv.metrics is not None

            # same params again: DVC finds every stage up to date, nothing recomputes
            metrics_mtime = (project / "data" / "eval" / "metrics.json").stat().st_mtime_ns
            run = run_deployment("train-eval/default", parameters={"quick": True}, timeout=900, poll_interval=2)
            assert run.state.is_completed(), f"{run.state}\n{stack.tail('worker')}"
            again = run.state.result()
            assert {s["stage"]: s["status"] for s in again["stages"]} == dict.fromkeys(statuses, "skipped")
            assert (project / "data" / "eval" / "metrics.json").stat().st_mtime_ns == metrics_mtime
            assert latest_model_version(engine).name == mv.name
            t_train = time.monotonic() - t_start

            # 2. vocab-refresh on demand: the vocabulary file is embedded with the published model
            run = run_deployment("vocab-refresh/hourly", timeout=600, poll_interval=2)
            stack.observe()
            assert run.state.is_completed(), f"{run.state}\n{stack.tail('worker')}"
            refreshed = run.state.result()
            assert refreshed["model_version"] == mv.name
            assert (
                refreshed["vocabularies"]["retail"]["added"] == 2
            )  # "red circle" was already embedded by publish (train vocabulary)
            labels, matrix, _ = load_embedding_matrix(engine, "retail", mv.name)
            assert labels == ["blue square moving left", "red circle"] and matrix.shape[0] == 2
            assert "example" in {v.name for v in list_vocabularies(engine)}

            # 3. a label added afterwards is embedded by a run the schedule created
            with (vocab_dir / "retail.txt").open("a") as f:
                f.write("green kite\n")
            added_at = datetime.now(UTC)
            deadline = time.monotonic() + 6 * REFRESH_INTERVAL_S + 180
            embedded_by = None
            with get_client(sync_client=True) as client:
                client.resume_deployment(refresh_deployment.id)  # the scheduler creates runs again
                completed = FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
                )
                while time.monotonic() < deadline and embedded_by is None:
                    stack.observe()
                    for r in client.read_flow_runs(deployment_filter=refresh_filter, flow_run_filter=completed):
                        if (
                            r.start_time
                            and r.start_time > added_at
                            and r.state.result()["vocabularies"]["retail"]["added"]
                        ):
                            embedded_by = r
                    if embedded_by is None:
                        time.sleep(2)
                client.pause_deployment(refresh_deployment.id)  # no new runs while shutting down
            assert embedded_by is not None, f"no scheduled vocab-refresh embedded the new label\n{stack.tail('worker')}"
            assert (
                embedded_by.auto_scheduled and embedded_by.deployment_id == refresh_deployment.id
            )  # from the schedule
            assert embedded_by.state.result()["vocabularies"]["retail"]["encoded"] == 1  # only the new label
            labels, _, _ = load_embedding_matrix(engine, "retail", mv.name)
            assert labels == ["blue square moving left", "green kite", "red circle"]
            engine.dispose()

            # let in-flight runs finish before stopping the worker (nothing is cancelled mid-write)
            with get_client(sync_client=True) as client:
                for _ in range(120):
                    active = client.read_flow_runs(
                        flow_run_filter=FlowRunFilter(
                            state=FlowRunFilterState(
                                type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                            )
                        )
                    )
                    if not active:
                        break
                    time.sleep(1)
    finally:
        leftovers = stack.stop()
    assert leftovers == [], f"processes left running after stop: {leftovers}"
    for name, proc in stack.procs:
        assert proc.poll() is not None, f"{name} still running"
    t_total = time.monotonic() - t_start
    print(
        f"\nprefect integration: server healthy {t_server:.0f} s, train-eval done {t_train:.0f} s, total {t_total:.0f} s"
    )
