"""Launchers for real servers on 127.0.0.1, shared by the test packages and scripts/bench_milvus.py.

- `MilvusLiteServer`: the `milvus-lite server` command (pure-Python Milvus over gRPC) on a data folder.
- `MilvusStandaloneServer`: the Milvus 2.3.5 standalone binary shipped by the `milvus` PyPI package.

Each server runs in its own process group so `stop()` takes down everything it spawned, and on Linux it also
gets SIGKILL when the process that started it dies (a killed test run leaves no server behind). Ports are
picked free at start, including the ones Milvus 2.3.5 would otherwise take fixed (etcd 2379/2380, metrics
9091), so two test runs on one machine do not collide.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

HOST = "127.0.0.1"

_live: weakref.WeakSet[_ServerProcess] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        server.stop()


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (all held open together so none repeats)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


# Run in front of a server on Linux: ask for SIGKILL when the parent dies (PR_SET_PDEATHSIG = 1; it survives the
# exec), give up if the parent is already gone, then become the server. A shim rather than `preexec_fn`, which is
# unsafe in a process with threads (pymilvus and gRPC run some).
_DIE_WITH_PARENT = (
    "import ctypes, os, sys; ctypes.CDLL(None, use_errno=True).prctl(1, 9); "
    "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execv(sys.argv[2], sys.argv[2:])"
)


def _command(args: list[str]) -> list[str]:
    if not sys.platform.startswith("linux"):
        return args
    # The signal comes when the *thread* that started the server ends: start servers from a long-lived thread.
    return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *args]


class _ServerProcess:
    """A server subprocess in its own process group, with its output in a log file."""

    name = "server"

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _spawn(self, args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                _command(args),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group, which stop() signals as a whole
            )
        _live.add(self)

    def _wait_until(self, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log_path}:\n{self._log_tail()}")
            if ready():
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s; see {self.log_path}:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after `grace` seconds. Idempotent."""
        proc, self.proc = self.proc, None
        _live.discard(self)
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # The leader is gone; make sure no other member of its group survives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def __enter__(self):
        self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MilvusLiteServer(_ServerProcess):
    """`milvus-lite server` on `data_dir`. Keeps its port across stop()/start(), so a restart serves the same URI."""

    name = "milvus-lite server"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(Path(data_dir).with_name(Path(data_dir).name + ".log"))
        self.data_dir = Path(data_dir)
        self.port = port or free_ports(1)[0]

    @property
    def uri(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        args = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data_dir)]
        self._spawn([*args, "--host", HOST, "--port", str(self.port)])
        self._wait_until(lambda: _port_open(self.port), timeout)


class MilvusStandaloneServer(_ServerProcess):
    """Milvus 2.3.5 standalone (the `milvus` PyPI package's binary) with everything under `base_dir`.

    Only the proxy port (`port`, the gRPC endpoint clients use) needs to be known; every other port is picked
    free. The embedded etcd ignores Milvus's own port settings (it always takes 2379/2380), so it gets a
    config file of its own. `settings` overrides milvus.yaml keys that exist in the package's template, by
    dotted name, e.g. {"queryCoord.checkInterval": 100}.
    """

    name = "milvus 2.3.5 standalone"

    def __init__(self, base_dir: Path, port: int | None = None, settings: dict[str, object] | None = None) -> None:
        super().__init__(Path(base_dir) / "logs" / "milvus-run.log")
        self.base_dir = Path(base_dir).resolve()
        self.port = port or free_ports(1)[0]
        self.metrics_port = 0
        self.settings = dict(settings or {})

    @property
    def uri(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        import milvus  # the `milvus` dev dependency; imported here so the module loads without it

        config = milvus.MilvusServerConfig(data_dir=str(self.base_dir))
        port_keys = sorted(k for k in config.configurable_items if k.endswith("_port") and k != "proxy_port")
        ports = free_ports(len(port_keys) + 3)
        config.update(proxy_port=self.port, **dict(zip(port_keys, ports, strict=False)))
        etcd_client, etcd_peer, self.metrics_port = ports[len(port_keys) :]
        config.update(etcd_port=etcd_client)
        for key, value in self.settings.items():
            config.set(key, value)
        config.resolve()  # writes configs/milvus.yaml, creates logs/ and data/
        self._configure_embedded_etcd(etcd_client, etcd_peer)
        self._check_settings_applied()
        # Unpacks the binary and its libraries into base_dir/bin (skipped when already there).
        milvus._initialize_data_files(str(self.base_dir))

        bin_dir = self.base_dir / "bin"
        env = dict(os.environ)
        env.update(
            DEPLOY_MODE="STANDALONE",
            METRICS_PORT=str(self.metrics_port),
            MILVUS_RUN_DIR=str(self.base_dir / "run"),
            LD_LIBRARY_PATH=":".join(p for p in (str(bin_dir), os.environ.get("LD_LIBRARY_PATH", "")) if p),
        )
        # Milvus reads configs/milvus.yaml relative to its working directory.
        self._spawn([str(bin_dir / "milvus"), "run", "standalone"], cwd=self.base_dir, env=env)
        self._wait_until(self._healthy, timeout)

    def _configure_embedded_etcd(self, client_port: int, peer_port: int) -> None:
        etcd_config = self.base_dir / "configs" / "embed-etcd.yaml"
        client, peer = f"http://{HOST}:{client_port}", f"http://{HOST}:{peer_port}"
        etcd_config.write_text(
            "name: default\n"
            f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
            f"initial-cluster: default={peer}\n"
        )
        milvus_yaml = self.base_dir / "configs" / "milvus.yaml"
        text = milvus_yaml.read_text()
        # `etcd.config.path` is not in the package's template: add it under the top-level `etcd:` key.
        patched = text.replace("\netcd:\n", f"\netcd:\n  config:\n    path: {etcd_config}\n", 1)
        if patched == text:
            raise RuntimeError(f"no top-level 'etcd:' section in {milvus_yaml}")
        milvus_yaml.write_text(patched)

    def _check_settings_applied(self) -> None:
        import yaml

        config = yaml.safe_load((self.base_dir / "configs" / "milvus.yaml").read_text())
        for key, value in self.settings.items():
            node = config
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node != value:
                raise ValueError(f"milvus.yaml has no setting {key!r} to override (template lacks it?)")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.metrics_port}/healthz", timeout=2) as resp:
                return b"OK" in resp.read()
        except (OSError, urllib.error.URLError):
            return False
