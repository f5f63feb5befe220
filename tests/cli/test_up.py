"""`faceauth up` and `faceauth ml` as real processes: start, refuse, stop with SIGTERM, start again at once."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.servers import process

UP_TIMEOUT_S = 120.0


class Up:
    """One `faceauth up` in `folder` (its data under folder/data), its output in a file."""

    def __init__(self, folder: Path, env: dict[str, str], *args: str) -> None:
        self.api_port, self.ml_port = process.free_ports(2)
        self.log = folder / f"up-{time.monotonic_ns()}.log"
        self.env = {**env, "ML_SERVICE_PORT": str(self.ml_port), "FACEAUTH_LOG_FORMAT": "text"}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "faceauth.cli",
                    "--log-level",
                    "warning",
                    "up",
                    "--port",
                    str(self.api_port),
                    *args,
                ],
                cwd=folder,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self) -> str:
        deadline = time.monotonic() + UP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"faceauth up exited {self.proc.returncode}:\n{self.output}")
            if "faceauth is up" in self.output and process.port_open(self.api_port):
                return self.output
            time.sleep(0.2)
        raise AssertionError(f"faceauth up not up after {UP_TIMEOUT_S:.0f} s:\n{self.output}")

    def wait_exit(self, timeout: float = UP_TIMEOUT_S) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def up_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEAUTH_", "ML_SERVICE_"))}
    return {**env, "ML_SERVICE_AUTO_FETCH": "false", "FACEAUTH_STARTUP_SWEEP": "false", **extra}


def ml_children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the ML child of a `faceauth up`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_the_ml_child_and_up_starts_again_at_once(tmp_path: Path, spoof_model_path: Path):
    env = up_env(tmp_path, ML_SERVICE_SPOOF_LOCAL_MODEL_PATH=str(spoof_model_path.resolve()))
    first = Up(tmp_path, env)
    try:
        out = first.wait_up()
        assert "admin key   fa_" in out  # a first start: the one admin key, shown once
        data = tmp_path / "data"
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / "milvus.db").stat().st_mode) & 0o077 == 0
        # Traffic through both services, so the restart meets connections of this run.
        base = f"http://127.0.0.1:{first.api_port}"
        for _ in range(20):
            assert httpx.get(f"{base}/readyz", timeout=10, trust_env=False).status_code == 200
        children = ml_children_of(first.proc.pid)
        assert children
        first.proc.send_signal(signal.SIGTERM)
        assert first.wait_exit(60) != 0 or True  # exit code aside, it must end ...
        deadline = time.monotonic() + 15
        while any(alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(c) for c in children), "the ML child outlived faceauth up"  # ... and take the child
    finally:
        first.kill()

    # The same ports, at once.
    second = Up.__new__(Up)
    second.api_port, second.ml_port = first.api_port, first.ml_port
    second.log = tmp_path / "up-again.log"
    second.env = first.env
    with open(second.log, "wb") as log:
        second.proc = subprocess.Popen(
            [sys.executable, "-m", "faceauth.cli", "--log-level", "warning", "up", "--port", str(first.api_port)],
            cwd=tmp_path,
            env=first.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        out = second.wait_up()
        assert "admin key" not in out  # keys exist: no new one
        assert httpx.get(f"http://127.0.0.1:{first.api_port}/readyz", timeout=10, trust_env=False).status_code == 200
    finally:
        second.proc.send_signal(signal.SIGTERM)
        second.wait_exit(60)
        second.kill()


@pytest.mark.slow
def test_up_without_the_spoof_model_says_so_and_exits_non_zero_unless_degraded(tmp_path: Path):
    env = up_env(tmp_path)  # no ML_SERVICE_SPOOF_LOCAL_MODEL_PATH, no download: the offline first start
    refused = Up(tmp_path, env)
    try:
        assert refused.wait_exit() == 1
        out = refused.output
        assert "faceauth is NOT up" in out and "faceauth is up" not in out
        assert "the spoof model is not loaded" in out and "ML_SERVICE_SPOOF_LOCAL_MODEL_PATH" in out
        assert "--degraded" in out
    finally:
        refused.kill()

    # Degraded, and with authentication off: the Face API answers on loopback only, and is not ready.
    degraded = Up(tmp_path, {**env, "FACEAUTH_AUTH_DISABLED": "true"}, "--degraded", "--host", "0.0.0.0")
    try:
        deadline = time.monotonic() + UP_TIMEOUT_S
        while "faceauth is up" not in degraded.output or not process.port_open(degraded.api_port):
            assert degraded.proc.poll() is None and time.monotonic() < deadline, degraded.output
            time.sleep(0.2)
        out = degraded.output
        assert "DEGRADED" in out and "listens on 127.0.0.1 only" in out
        assert f"http://127.0.0.1:{degraded.api_port}" in out
        assert _listening_addresses(degraded.api_port) == {"0100007F"}  # 127.0.0.1, and nothing else
        ready = httpx.get(f"http://127.0.0.1:{degraded.api_port}/readyz", timeout=10, trust_env=False)
        assert ready.status_code == 503
        models = ready.json()["checks"]["ml_models"]
        assert models["status"] == "down" and "spoof" in models["detail"]
        assert "ML_SERVICE_SPOOF_LOCAL_MODEL_PATH" in models["detail"]
        assert ready.json()["checks"]["ml_service"]["status"] == "ok"
    finally:
        degraded.proc.send_signal(signal.SIGTERM)
        degraded.wait_exit(60)
        degraded.kill()


def _listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp* writes them) of the sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_ml_refuses_a_non_loopback_port_without_a_token(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_SERVICE_")}
    port = process.free_port()
    r = subprocess.run(
        [sys.executable, "-m", "faceauth.cli", "ml", "--host", "0.0.0.0", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "ML_SERVICE_AUTH_TOKEN" in r.stderr and "ML_SERVICE_ALLOW_UNAUTHENTICATED" in r.stderr
    assert not process.port_open(port)


def test_which_ml_hosts_need_a_token():
    from faceauth.cli.services import unauthenticated_ml_refusal

    assert unauthenticated_ml_refusal("0.0.0.0", None, False)
    assert unauthenticated_ml_refusal("10.1.2.3", "", False)
    assert unauthenticated_ml_refusal("0.0.0.0", "secret", False) is None
    assert unauthenticated_ml_refusal("0.0.0.0", None, True) is None
    for loopback in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert unauthenticated_ml_refusal(loopback, None, False) is None


def test_a_port_left_in_time_wait_counts_as_free_and_a_listening_one_does_not():
    from faceauth.cli.services import _port_in_use

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    assert _port_in_use("127.0.0.1", port)  # a server still listens
    served.close()  # the server closes first: its side of the connection goes to TIME_WAIT
    client.close()
    listener.close()
    assert not _port_in_use("127.0.0.1", port)  # what a restart right after a stop meets
