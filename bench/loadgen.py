"""A small closed-loop HTTP load generator for benchmarking services on this machine (asyncio + httpx).

Reusable by every benchmark in ``bench``: it knows nothing about faceauth. The pieces:

* ``Payload`` / ``json_payload`` / ``multipart_payload`` -- request bodies encoded *before* timing starts, so
  the client does as little work as possible while it measures;
* ``run_level`` -- N concurrent workers on one shared ``httpx.AsyncClient`` send a warm-up batch, then exactly
  ``requests`` timed requests, drawing payloads round-robin; returns a ``LoadResult`` (throughput, latency
  percentiles, errors, CPU seconds of client and server: a server is anything with ``cpu_seconds()``, such as
  ``bench.servers.process.ServiceProcess``);
* ``wait_for_quiet`` -- whether other work on the machine would disturb a measurement (``LoadResult.other_cores``
  reports it afterwards);
* ``results_table`` -- the markdown table of a list of results.

Traffic goes only to the URL the caller gives (use loopback), and every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import httpx

from bench.machine import machine_busy_seconds

__all__ = [
    "CpuMeter",
    "LoadResult",
    "Payload",
    "json_payload",
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

    def disturbed(self, max_other_cores: float) -> bool:
        """Did other work on the machine take more than `max_other_cores` during a phase long enough to tell?"""
        return (self.other_cores or 0.0) > max_other_cores and self.duration_s >= 2.0

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


class CpuMeter(Protocol):
    def cpu_seconds(self) -> float | None:
        """CPU time used so far (None: unknown)."""


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
    server: CpuMeter | None = None,
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
