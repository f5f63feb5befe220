"""A server as a subprocess on 127.0.0.1: started in its own process group, waited for, stopped as a whole.

- `ServerProcess`: the base of every launcher. Its output goes to a log file (appended: a restart keeps the
  earlier output), `stop()` takes down everything it spawned, and with `die_with_parent` it also gets SIGKILL
  on Linux when the process that started it dies (a killed test run leaves no server behind).
- `ServiceProcess`: an HTTP service, ready once a GET of its readiness path answers 2xx; it measures its
  start-up time and the CPU time of its process tree.
- `free_ports` / `free_port`: ports free on 127.0.0.1 right now.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.machine import tree_cpu_seconds

HOST = "127.0.0.1"

_live: weakref.WeakSet[ServerProcess] = weakref.WeakSet()


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


def free_port() -> int:
    return free_ports(1)[0]


def port_open(port: int) -> bool:
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


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ServerProcess:
    """A server subprocess in its own process group, with its output in a log file (None: discarded).

    `die_with_parent`: the signal comes when the *thread* that started the server ends, so only servers started
    from a long-lived thread (a test session's main thread) can have it.
    """

    name = "server"
    poll_s = 0.1  # between readiness checks
    grace_s = 5.0  # from SIGTERM to SIGKILL

    def __init__(self, log_path: Path | None, *, die_with_parent: bool = True) -> None:
        self.log_path = log_path
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _spawn(self, args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} already running")
        if self.die_with_parent and sys.platform.startswith("linux"):
            args = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *args]
        log: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")  # noqa: SIM115  # the child holds it; closed below
        try:
            self.proc = subprocess.Popen(
                list(args),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, which stop() signals as a whole
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        _live.add(self)

    def _wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        """Until `ready()`; stopped (and an error raised) if the server exits first or `timeout` passes."""
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:  # bounded
                if not self.running:
                    code = self.proc.returncode if self.proc else None
                    raise RuntimeError(f"{self.name} exited during start-up (exit {code}){self._log_tail()}")
                if ready():
                    return
                time.sleep(self.poll_s)
            raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s{self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _log_tail(self, lines: int = 30) -> str:
        if self.log_path is None:
            return ""
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"; see {self.log_path}:\n" + "\n".join(tail)

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after `grace` seconds (default `grace_s`).
        Idempotent. Only that group is signalled: its id is the pid of the process this object started.
        """
        grace = self.grace_s if grace is None else grace
        proc, self.proc = self.proc, None
        _live.discard(self)
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:  # the whole group is gone
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(proc.pid):  # bounded
                proc.poll()  # reap the leader
                time.sleep(0.05)
            if not _group_alive(proc.pid):
                break
        proc.poll()

    def __enter__(self):
        self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServiceProcess(ServerProcess):
    """An HTTP server at `url` (loopback), ready once GET `url + ready_path` answers 2xx; not started until
    `start()` (or use it as a context manager). It can be started again after `stop()`, with the same command."""

    grace_s = 15.0

    def __init__(
        self,
        argv: Sequence[str],
        url: str,
        *,
        name: str | None = None,
        ready_path: str = "/readyz",
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        ready_timeout: float = 180.0,
        poll_s: float = 0.25,
        die_with_parent: bool = False,
    ) -> None:
        super().__init__(Path(log_path) if log_path else None, die_with_parent=die_with_parent)
        self.argv = list(argv)
        self.url = url
        self.ready_url = url + ready_path
        self.name = name or f"{Path(self.argv[0]).name} at {url}"
        self.env = dict(os.environ if env is None else env)
        self.cwd = Path(cwd) if cwd else None
        self.ready_timeout = ready_timeout
        self.poll_s = poll_s
        self.startup_s: float | None = None
        self.ready_body: Any = None  # the JSON of the first 2xx readiness answer

    def start(self) -> ServiceProcess:
        self._spawn(self.argv, cwd=self.cwd, env=self.env)
        started = time.perf_counter()
        with httpx.Client(timeout=2.0) as client:
            self._wait_until(lambda: self._ready(client), self.ready_timeout)
        self.startup_s = time.perf_counter() - started
        return self

    def _ready(self, client: httpx.Client) -> bool:
        try:
            response = client.get(self.ready_url)
        except httpx.HTTPError:
            return False
        if not response.is_success:
            return False
        try:
            self.ready_body = response.json()
        except ValueError:
            self.ready_body = None
        return True

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) of the server's live process tree, or None (not running, no /proc)."""
        return None if self.proc is None else tree_cpu_seconds(self.proc.pid)
