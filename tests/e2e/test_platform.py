"""The commands users run, as real processes over real HTTP: `faceauth up`, `faceauth api`, and a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bench.servers.process import free_port

# The commands run as a user runs them (ports from the environment, output on a pipe), not through the launchers
# of bench.servers, which pass their own --host and --port.


def wait_until_ready(url: str, process: subprocess.Popen, timeout_s: float = 90.0) -> None:
    """Wait for GET /readyz to answer 200; if the process dies first, fail with the end of its output."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"server exited with {process.returncode}: {out[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not become ready in {timeout_s:.0f} s")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "faceauth.cli", *args],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _start_reading(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen, list[str]]:
    """Start a command; its output lines collect in the list while it runs."""
    process = _start(args, env, cwd)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True).start()
    return process, lines


def _printed_admin_key(lines: list[str]) -> str | None:
    """The admin key `up` printed, once its start-up block (ending with the data line) has been read."""
    deadline = time.monotonic() + 10
    while not any(line.strip().startswith("data") for line in list(lines)) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # the key line follows the data line
    return next((line.split()[2] for line in list(lines) if line.strip().startswith("admin key")), None)


def _interrupt(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "faceauth.cli", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _enrol(client: httpx.Client, tenant: str, face_id: str, image: bytes) -> httpx.Response:
    return client.post("/v1/faces/insert", data={"id": face_id, "tenant": tenant}, files={"file": ("p.jpg", image)})


def _top_match(client: httpx.Client, tenant: str, image: bytes) -> str | None:
    r = client.post("/v1/faces/search", data={"tenant": tenant}, files={"file": ("q.jpg", image)})
    assert r.status_code == 200, r.text
    matches = r.json()["searchResult"]["matches"]
    return matches[0]["id"] if matches else None


def test_faceauth_api_keeps_every_face_across_a_restart(ml_service, people, photos, tmp_path):
    port = free_port()
    env = {
        "FACEAUTH_DATA_DIR": str(tmp_path / "data"),
        "FACEAUTH_API_PORT": str(port),
        "FACEAUTH_API_HOST": "127.0.0.1",
        "FACEAUTH_ML_INFERENCE_SERVICE_URL": ml_service.url,
        "FACEAUTH_ML_INFERENCE_AUTH_TOKEN": ml_service.token,
    }
    url = f"http://127.0.0.1:{port}"
    # A tenant key made with the CLI before the API starts; it works across the restart too.
    token = _cli(["keys", "create", "--tenant", "acme"], env, tmp_path).strip().splitlines()[-1]
    assert "fa_" in token and token.encode() not in b"".join(
        p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()
    )
    headers = {"X-Api-Key": token}
    api = _start(["api"], env, tmp_path)
    try:
        wait_until_ready(url, api)
        with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
            for i, person in enumerate(people[:3]):
                assert _enrol(client, "acme", f"emp_{i}", photos(person.enrol_photo)).status_code == 200
            assert client.delete("/v1/faces/delete", params={"id": "emp_2", "tenant": "acme"}).status_code == 200
    finally:
        stop_process(api)

    api = _start(["api"], env, tmp_path)
    try:
        wait_until_ready(url, api)
        with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
            assert client.get("/v1/faces/get/emp_0", params={"tenant": "other"}).status_code == 403
            for i, person in enumerate(people[:2]):
                assert client.get(f"/v1/faces/get/emp_{i}", params={"tenant": "acme"}).status_code == 200
                assert _top_match(client, "acme", photos(person.probe_photo)) == f"emp_{i}"
            assert client.get("/v1/faces/get/emp_2", params={"tenant": "acme"}).status_code == 404
            assert _top_match(client, "acme", photos(people[2].probe_photo)) is None
    finally:
        stop_process(api)


def test_faceauth_up_starts_both_services_with_data_under_the_working_directory(
    spoof_model_path, people, photos, tmp_path
):
    api_port, ml_port = free_port(), free_port()
    env = {
        "FACEAUTH_API_PORT": str(api_port),
        "FACEAUTH_API_HOST": "127.0.0.1",
        "ML_SERVICE_PORT": str(ml_port),
        "ML_SERVICE_SPOOF_LOCAL_MODEL_PATH": str(spoof_model_path),
        "ML_SERVICE_AUTO_FETCH": "false",
    }
    for name in list(os.environ):
        if name.startswith(("FACEAUTH_", "ML_SERVICE_")) and name not in env and name != "FACEAUTH_SHARED_DIR":
            env[name] = ""  # the user's defaults, not this test run's
    env = {k: v for k, v in env.items() if v}
    url = f"http://127.0.0.1:{api_port}"
    up, lines = _start_reading(["up"], env, tmp_path)
    try:
        wait_until_ready(url, up, timeout_s=120)
        token = _printed_admin_key(lines)
        assert token and token.startswith("fa_"), lines
        assert httpx.get(f"{url}/v1/subjects", params={"tenant": "acme"}).status_code == 401
        with httpx.Client(base_url=url, timeout=60, headers={"X-Api-Key": token}) as client:
            assert _enrol(client, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
            assert _top_match(client, "acme", photos(people[0].probe_photo)) == "emp_1"
            assert client.get("/docs").status_code == 200
        # the ML service listens on loopback and wants the internal token `up` made for it
        assert httpx.post(f"http://127.0.0.1:{ml_port}/v1/analyze", content=b"x").status_code == 401
        assert (tmp_path / "data" / "milvus.db").exists()
        assert any((tmp_path / "data" / "images").rglob("*"))
    finally:
        _interrupt(up)
    out = "".join(lines)
    assert f"http://127.0.0.1:{api_port}/docs" in out
    # The admin key is printed on the first start only.
    up, lines = _start_reading(["up"], env, tmp_path)
    try:
        wait_until_ready(url, up, timeout_s=120)
        assert _printed_admin_key(lines) is None
        assert (
            httpx.get(f"{url}/v1/faces/get/emp_1", params={"tenant": "acme"}, headers={"X-Api-Key": token}).status_code
            == 200
        )
    finally:
        _interrupt(up)
    # both processes are gone: nothing answers on either port
    for port in (api_port, ml_port):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            raise AssertionError(f"port {port} still answers after `faceauth up` stopped")
        except httpx.TransportError:
            pass


def test_faceauth_up_refuses_an_ml_port_that_something_else_holds(tmp_path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        up = _start(["up"], {"ML_SERVICE_PORT": str(port), "FACEAUTH_API_PORT": str(free_port())}, tmp_path)
        out, _ = up.communicate(timeout=60)
    assert up.returncode == 1
    assert f"port {port} is already in use" in out
    assert not (tmp_path / "data").exists()  # it stopped before starting anything
