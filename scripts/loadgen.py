"""A small closed-loop HTTP load generator for benchmarking services on this machine (asyncio + httpx).

Reusable by every ``scripts/bench_*.py``: it knows nothing about faceauth. The pieces:

* ``Payload`` / ``json_payload`` / ``multipart_payload`` -- request bodies encoded *before* timing starts, so
  the client does as little work as possible while it measures;
* ``run_level`` -- N concurrent workers on one shared ``httpx.AsyncClient`` send a warm-up batch, then exactly
  ``requests`` timed requests, drawing payloads round-robin; returns a ``LoadResult`` (throughput, latency
  percentiles, errors, CPU seconds of client and server);
* ``ServiceProcess`` -- starts a server as a subprocess in its own process group, waits for its readiness URL,
  stops it (SIGTERM to that group, then SIGKILL), and measures its CPU time from ``/proc``;
* ``wait_for_quiet`` / ``machine_busy_seconds`` -- whether other work on the machine would disturb a measurement
  (``LoadResult.other_cores`` reports it afterwards);
* ``results_table`` -- the markdown table of a list of results.

Traffic goes only to the URL the caller gives (use loopback), and every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "LoadResult",
    "Payload",
    "ServiceProcess",
    "free_port",
    "json_payload",
    "machine_busy_seconds",
    "multipart_payload",
    "percentile",
    "results_table",
    "run_level",
    "wait_for_quiet",
]


# --------------------------------------------------------------------------------------------- payloads


@dataclass(frozen=True, slots=True)
class Payload:
    """One pre-encoded request body."""

    content: bytes
    content_type: str
    name: str = ""  # e.g. the photo it carries, for reports

    @property
    def headers(self) -> dict[str, str]:
        return {"content-type": self.content_type}


def json_payload(obj: Any, name: str = "") -> Payload:
    return Payload(json.dumps(obj, separators=(",", ":")).encode(), "application/json", name)


def multipart_payload(
    files: Mapping[str, tuple[str, bytes, str]],
    fields: Mapping[str, str] | None = None,
    name: str = "",
) -> Payload:
    """A ``multipart/form-data`` body: ``files`` maps field -> (filename, bytes, content type)."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for key, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    for key, (filename, data, ctype) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{filename}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return Payload(b"".join(parts), f"multipart/form-data; boundary={boundary}", name)


# --------------------------------------------------------------------------------------------- results


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(slots=True)
class LoadResult:
    """What one level (one service, one endpoint, one concurrency) measured."""

    service: str
    endpoint: str
    concurrency: int
    requests: int  # timed requests sent
    ok: int  # 2xx answers
    duration_s: float  # wall time of the timed phase
    latencies_ms: list[float] = field(default_factory=list)  # of the 2xx answers, in completion order
    errors: dict[str, int] = field(default_factory=dict)  # "HTTP 503" / exception name -> count
    client_cpu_s: float | None = None  # CPU time of this (the load generator's) process during the phase
    server_cpu_s: float | None = None  # CPU time of the server's process tree during the phase
    machine_cpu_s: float | None = None  # busy CPU time of the whole machine during the phase (all cores)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Successful requests per second of wall time."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    @property
    def p50(self) -> float:
        return self.p(50)

    @property
    def p95(self) -> float:
        return self.p(95)

    @property
    def p99(self) -> float:
        return self.p(99)

    @property
    def server_cores(self) -> float | None:
        """Average number of cores the server kept busy."""
        if self.server_cpu_s is None or self.duration_s <= 0:
            return None
        return self.server_cpu_s / self.duration_s

    @property
    def client_cores(self) -> float | None:
        if self.client_cpu_s is None or self.duration_s <= 0:
            return None
        return self.client_cpu_s / self.duration_s

    @property
    def other_cores(self) -> float | None:
        """Cores kept busy by anything but the server and this client (other work on the machine)."""
        if self.machine_cpu_s is None or self.server_cpu_s is None or self.client_cpu_s is None:
            return None
        if self.duration_s <= 0:
            return None
        other = self.machine_cpu_s - self.server_cpu_s - self.client_cpu_s
        return max(0.0, other / self.duration_s)

    def summary(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "endpoint": self.endpoint,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.error_count,
            "duration_s": round(self.duration_s, 4),
            "throughput_per_s": round(self.throughput, 3),
            "p50_ms": round(self.p50, 2),
            "p95_ms": round(self.p95, 2),
            "p99_ms": round(self.p99, 2),
            "server_cores": None if self.server_cores is None else round(self.server_cores, 3),
            "client_cores": None if self.client_cores is None else round(self.client_cores, 3),
            "other_cores": None if self.other_cores is None else round(self.other_cores, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["latencies_ms"] = [round(v, 3) for v in self.latencies_ms]
        return {**self.summary(), "error_breakdown": raw["errors"], "latencies_ms": raw["latencies_ms"]}


def results_table(results: Iterable[LoadResult], unit: str = "img/s") -> str:
    """A markdown table: service, endpoint, concurrency, throughput, p50/p95/p99, errors, server cores."""
    lines = [
        f"| service | endpoint | concurrency | {unit} | p50 ms | p95 ms | p99 ms | errors | server cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cores = "" if r.server_cores is None else f"{r.server_cores:.2f}"
        lines.append(
            f"| {r.service} | {r.endpoint} | {r.concurrency} | {r.throughput:.1f} | {r.p50:.1f} | "
            f"{r.p95:.1f} | {r.p99:.1f} | {r.error_count}/{r.requests} | {cores} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- the load


async def _send(client: httpx.AsyncClient, url: str, payload: Payload) -> tuple[float, str | None]:
    """(latency ms, error key or None) of one request; the body is read in full."""
    start = time.perf_counter()
    try:
        response = await client.post(url, content=payload.content, headers=payload.headers)
        await response.aread()
    except httpx.HTTPError as exc:
        return (time.perf_counter() - start) * 1000.0, type(exc).__name__
    elapsed = (time.perf_counter() - start) * 1000.0
    if not response.is_success:
        return elapsed, f"HTTP {response.status_code}"
    return elapsed, None


@dataclass(slots=True)
class _Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0


async def _drive(
    client: httpx.AsyncClient,
    url: str,
    payloads: Sequence[Payload],
    concurrency: int,
    count: int,
    start_index: int,
    tally: _Tally,
) -> None:
    """``concurrency`` workers share one counter and send exactly ``count`` requests in total."""

    async def worker() -> None:
        while tally.sent < count:  # bounded: each pass claims one of `count` slots
            i = tally.sent
            tally.sent += 1
            latency, error = await _send(client, url, payloads[(start_index + i) % len(payloads)])
            if error is None:
                tally.latencies_ms.append(latency)
            else:
                tally.errors[error] += 1

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))


async def run_level(
    client: httpx.AsyncClient,
    url: str,
    payloads: Sequence[Payload],
    *,
    concurrency: int,
    requests: int,
    warmup: int = 0,
    service: str = "",
    endpoint: str = "",
    server: ServiceProcess | None = None,
    max_seconds: float | None = None,
) -> LoadResult:
    """Warm up with ``warmup`` requests, then time exactly ``requests`` requests at ``concurrency``.

    Payloads are drawn round-robin (the timed phase continues where the warm-up stopped). Latency is measured
    per request from just before sending to the end of the body; non-2xx answers and transport failures are
    counted as errors and left out of the percentiles. ``max_seconds`` bounds the timed phase: past it the
    requests in flight are cancelled and counted as errors ("cut"), and the result covers what completed.
    CPU time is measured for this process, the server's process tree (if given) and the whole machine.
    """
    if not payloads:
        raise ValueError("no payloads")
    if client.timeout.read is None:
        raise ValueError("the client needs a finite read timeout")
    if warmup > 0:
        await _drive(client, url, payloads, concurrency, warmup, 0, _Tally())

    tally = _Tally()
    server_cpu0 = server.cpu_seconds() if server else None
    machine_cpu0 = machine_busy_seconds()
    client_cpu0 = time.process_time()
    start = time.perf_counter()
    try:
        await asyncio.wait_for(_drive(client, url, payloads, concurrency, requests, warmup, tally), max_seconds)
    except TimeoutError:
        done = len(tally.latencies_ms) + sum(tally.errors.values())
        tally.errors["cut"] += tally.sent - done
    duration = time.perf_counter() - start
    client_cpu = time.process_time() - client_cpu0
    machine_cpu1 = machine_busy_seconds()
    server_cpu1 = server.cpu_seconds() if server else None

    return LoadResult(
        service=service,
        endpoint=endpoint,
        concurrency=concurrency,
        requests=tally.sent,
        ok=len(tally.latencies_ms),
        duration_s=duration,
        latencies_ms=tally.latencies_ms,
        errors=dict(tally.errors),
        client_cpu_s=client_cpu,
        server_cpu_s=_delta(server_cpu0, server_cpu1),
        machine_cpu_s=_delta(machine_cpu0, machine_cpu1),
    )


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


# --------------------------------------------------------------------------------------------- machine


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_seconds() -> float | None:
    """Busy CPU time of the whole machine so far, summed over cores (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is inside user)
    return busy / _CLK_TCK


async def wait_for_quiet(
    max_cores: float = 0.25, sample_s: float = 1.0, timeout_s: float = 120.0
) -> tuple[bool, float | None]:
    """Wait (bounded) until the machine's busy cores over one sample fall to ``max_cores``.

    Call it while the server under test is idle: other work on the machine (a test suite, a build) would
    otherwise be measured as slowness. Returns (quiet?, the last sample in cores; None without /proc).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        before = machine_busy_seconds()
        await asyncio.sleep(sample_s)
        after = machine_busy_seconds()
        if before is None or after is None:
            return True, None
        last = (after - before) / sample_s
        if last <= max_cores:
            return True, last
        if time.monotonic() >= deadline:
            return False, last


def _process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, utime + stime in seconds) of every live process (Linux /proc)."""
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK)
    return table


# --------------------------------------------------------------------------------------------- servers


def _rss_kib(pid: int) -> int | None:
    """VmRSS of one process in KiB; None when there is no such process (0 for a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return 0


def tree_rss_mib(pid: int, table: dict[int, tuple[int, float]] | None = None) -> tuple[float, float] | None:
    """(RSS of the process and all its descendants, RSS of the process alone) in MiB, or None once it is gone.

    The tree matters: the embedded milvus-lite runs as a child of the Face API process.
    """
    own = _rss_kib(pid)
    if own is None:
        return None
    children: dict[int, list[int]] = {}
    for child, (ppid, _cpu) in (_process_table() if table is None else table).items():
        children.setdefault(ppid, []).append(child)
    total, stack = 0, [pid]
    while stack:  # a tree: each pid is visited once
        current = stack.pop()
        total += _rss_kib(current) or 0
        stack.extend(children.get(current, ()))
    return total / 1024, own / 1024


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ServiceProcess:
    """A server started as a subprocess (in its own session) and stopped with it; use as a context manager.

    ``ready_url`` is polled with GET until it answers 2xx or ``ready_timeout`` passes. The server's output
    goes to ``log_path`` (or is discarded).
    """

    def __init__(
        self,
        argv: Sequence[str],
        ready_url: str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        ready_timeout: float = 180.0,
    ) -> None:
        self.argv = list(argv)
        self.ready_url = ready_url
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.log_path = Path(log_path) if log_path else None
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None

    # -- lifecycle

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        t0 = time.perf_counter()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - t0
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.argv[:4]} exited with {self.proc.returncode} before it was ready{self._log_tail()}"
                    )
                try:
                    if client.get(self.ready_url).is_success:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise TimeoutError(f"{self.ready_url} not ready after {self.ready_timeout:.0f} s{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n--- server log (tail) ---\n" + "\n".join(tail)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the server's process group (it was started in a session of its own), then SIGKILL.

        Only that group is signalled: its id is the pid of the process this object started.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:  # the whole group is gone
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(proc.pid):  # bounded
                proc.poll()  # reap the leader
                time.sleep(0.1)
            if not _group_alive(proc.pid):
                break
        proc.poll()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- measurements

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) of the server's live process tree, or None where /proc is missing."""
        if self.proc is None or not Path("/proc/self/stat").exists():
            return None
        table = _process_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _cpu) in table.items():
            children.setdefault(ppid, []).append(pid)
        total, stack = 0.0, [self.proc.pid]
        while stack:  # a tree: each pid is visited once
            pid = stack.pop()
            if pid in table:
                total += table[pid][1]
            stack.extend(children.get(pid, ()))
        return total
