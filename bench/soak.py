"""Soak the Face API with a mixed load for a while, then check that no acknowledged write was lost.

By default it starts its own ``faceauth ml`` and ``faceauth api`` (embedded stores in a temporary data folder,
on free loopback ports), creates an admin key with ``faceauth keys create --admin``, and drives ``--concurrency``
clients for ``--duration`` seconds with a mix of

* insert -- a new id, a photo of one of the labelled people (same-person pairs of ``master.csv``);
* search -- a photo of an enrolled person (another photo than the enrolled one where there is one), or of a
  stranger who is never enrolled;
* verify -- ``reference_id`` an enrolled id, the probe another photo of that person;
* delete -- of a face whose insert was acknowledged.

Every acknowledged write is recorded: an insert answered 200 must be there at the end (unless an acknowledged
delete removed it), a delete answered 200 must stay gone. After the load stops each of them is checked: a live
id must answer GET 200 and be found by a search with its enrolment photo; a deleted id must answer 404 and be in
no search result. Memory (RSS) of both service processes is sampled every few seconds throughout.

It prints (and with ``--json`` writes) requests, rates and latency percentiles per operation, HTTP status counts
(503 load shedding apart from other 5xx), the RSS samples, and the write check. Exit status 1 when a write was
lost, a delete came back, a write could not be checked, or any 500 (or other non-503 5xx) was answered.

Run::

    FACEAUTH_SHARED_DIR=../shared .venv/bin/python -m bench.soak --duration 600 --json soak.json --plot soak.png
    ... --api-url http://127.0.0.1:8000 --api-key fa_...   # a running API (pass --api-pid/--ml-pid for RSS)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import multipart_payload, percentile
from bench.machine import machine_busy_seconds, tree_cpu_seconds, tree_rss_mib
from bench.photos import people_from_pairs
from bench.servers.services import FaceauthService, api_env, ml_env, spoof_model_env

OPS = ("insert", "search", "verify", "delete")
SHED_CODES = {"ml_overloaded", "overloaded"}
EXPECTED = {"insert": 200, "search": 200, "verify": 200, "delete": 200}


_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- faces


@dataclass(slots=True)
class Face:
    """One id the soak inserted, and what the service acknowledged about it."""

    id: str
    tenant: str
    person: int
    photo: str
    state: str = "inserting"  # -> live | insert_failed | insert_unknown; live -> deleting -> deleted | delete_failed
    users: int = 0  # verifies / searches in flight that name this id (a delete waits until none)


# --------------------------------------------------------------------------------------------- tallies


@dataclass(slots=True)
class OpStats:
    requests: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # of the expected (2xx) answers
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "503", or a transport error's name
    codes_503: Counter[str] = field(default_factory=Counter)
    shed_503: int = 0  # 503 ml_overloaded / overloaded, or any 503 with Retry-After: deliberate load shedding
    other_503: int = 0  # a 503 without either: a dependency was down (the contract: nothing was written)
    http_500: int = 0  # always a failure
    other_5xx: int = 0  # 501, 502, 504, ...: a failure too

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    def summary(self, seconds: float) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "rate_per_s": round(self.requests / seconds, 3) if seconds > 0 else 0.0,
            "ok_rate_per_s": round(self.ok / seconds, 3) if seconds > 0 else 0.0,
            "p50_ms": round(percentile(self.latencies_ms, 50), 1),
            "p95_ms": round(percentile(self.latencies_ms, 95), 1),
            "p99_ms": round(percentile(self.latencies_ms, 99), 1),
            "max_ms": round(max(self.latencies_ms), 1) if self.latencies_ms else None,
            "statuses": dict(sorted(self.statuses.items())),
            "codes_503": dict(self.codes_503),
            "shed_503": self.shed_503,
            "other_503": self.other_503,
            "http_500": self.http_500,
            "other_5xx": self.other_5xx,
        }


@dataclass(slots=True)
class Answer:
    status: int | None  # None: no HTTP answer (timeout, connection error)
    error: str | None  # the transport error's name, or the error code of a non-2xx answer
    body: dict[str, Any]
    latency_ms: float
    retry_after: str | None = None


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code", "")) if isinstance(error, dict) else ""


# --------------------------------------------------------------------------------------------- memory


def _series_summary(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "first": round(values[0], 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "last": round(values[-1], 1),
    }


# --------------------------------------------------------------------------------------------- the soak


class Soak:
    def __init__(
        self,
        args: argparse.Namespace,
        client: httpx.AsyncClient,
        photos: dict[str, bytes],
        people: list[list[str]],
        strangers: list[str],
        pids: dict[str, int],
    ) -> None:
        self.args = args
        self.client = client
        self.photos = photos
        self.people = people  # enrolled people: index -> their photos
        self.strangers = strangers  # photos of people never enrolled
        self.pids = pids  # service name -> pid, for RSS samples
        self.rng = random.Random(args.seed)
        run = dt.datetime.now(dt.UTC).strftime("%H%M%S") + f"{self.rng.randrange(16**4):04x}"
        self.tenants = [f"{args.tenant_prefix}-{run}-t{i}" for i in range(args.tenants)]
        self.run = run
        self.faces: dict[str, Face] = {}
        self.live: dict[str, Face] = {}
        self.per_photo: Counter[tuple[str, str]] = Counter()  # (tenant, photo) -> ids that may hold it now
        self.next_id = 0
        self.stats = {op: OpStats() for op in OPS}
        self.timeline: dict[int, Counter[str]] = defaultdict(Counter)  # interval -> op -> 2xx answers
        # minute of the load -> op -> latencies of its 2xx answers: shows whether the service slows as data grows
        self.by_minute: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.live_by_minute: dict[int, int] = {}
        self.quality: Counter[str] = Counter()  # verify / search outcomes, for information
        self.during_run: list[dict[str, Any]] = []  # acknowledged faces the service denied while the load ran
        self.memory: list[dict[str, float]] = []
        self.t0 = 0.0
        self.load_seconds = 0.0

    # -- requests

    async def call(self, method: str, url: str, **kwargs: Any) -> Answer:
        start = time.perf_counter()
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            return Answer(None, type(exc).__name__, {}, (time.perf_counter() - start) * 1000.0)
        latency = (time.perf_counter() - start) * 1000.0
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        error = None if response.is_success else _error_code(response)
        return Answer(response.status_code, error, body, latency, response.headers.get("retry-after"))

    def tally(self, op: str, answer: Answer) -> None:
        stats = self.stats[op]
        stats.requests += 1
        stats.statuses[str(answer.status) if answer.status is not None else answer.error or "error"] += 1
        if answer.status == EXPECTED[op]:
            stats.latencies_ms.append(answer.latency_ms)
            elapsed = time.monotonic() - self.t0
            self.timeline[int(elapsed // self.args.sample_every)][op] += 1
            self.by_minute[int(elapsed // 60)][op].append(answer.latency_ms)
            self.live_by_minute[int(elapsed // 60)] = len(self.live)
        elif answer.status == 503:
            code = answer.error or ""
            stats.codes_503[code or "-"] += 1
            if code in SHED_CODES or answer.retry_after:
                stats.shed_503 += 1
            else:
                stats.other_503 += 1
        elif answer.status == 500:
            stats.http_500 += 1
        elif answer.status is not None and answer.status >= 500:
            stats.other_5xx += 1

    @staticmethod
    def photo_form(field_name: str, name: str, data: bytes, fields: dict[str, str]):
        payload = multipart_payload({field_name: (name, data, "image/jpeg")}, fields, name=name)
        return {"content": payload.content, "headers": payload.headers}

    # -- operations

    def pick_live(self, need_second_photo: bool = False) -> Face | None:
        candidates = [f for f in self.live.values() if not need_second_photo or len(self.people[f.person]) > 1]
        return self.rng.choice(candidates) if candidates else None

    async def op_insert(self) -> bool:
        cap = self.args.per_photo_cap
        choices = [
            (tenant, person, photo)
            for tenant in self.tenants
            for person, photos in enumerate(self.people)
            for photo in photos
            if self.per_photo[tenant, photo] < cap
        ]
        if not choices:
            # Every photo is at its cap in every tenant: a new tenant (customer) signs up, so the insert share
            # of the mix holds however long the soak runs.
            self.tenants.append(f"{self.args.tenant_prefix}-{self.run}-t{len(self.tenants)}")
            choices = [
                (self.tenants[-1], person, photo) for person, photos in enumerate(self.people) for photo in photos
            ]
        tenant, person, photo = self.rng.choice(choices)
        face = Face(f"soak-{self.run}-{self.next_id:06d}", tenant, person, photo)
        self.next_id += 1
        self.faces[face.id] = face
        self.per_photo[tenant, photo] += 1  # counted before the answer: an unknown outcome may still be stored
        form = self.photo_form("file", photo, self.photos[photo], {"id": face.id, "tenant": tenant})
        answer = await self.call("POST", "/v1/faces/insert", **form)
        self.tally("insert", answer)
        if answer.status == 200:
            face.state = "live"
            self.live[face.id] = face
        elif answer.status is None:
            face.state = "insert_unknown"  # no answer: it may or may not have been stored
        else:
            face.state = "insert_failed"
            self.per_photo[tenant, photo] -= 1
        return True

    async def op_search(self) -> bool:
        face = self.pick_live() if self.rng.random() >= self.args.stranger_share else None
        if face is None:
            tenant, photo, person = self.rng.choice(self.tenants), self.rng.choice(self.strangers), None
        else:
            others = [p for p in self.people[face.person] if p != face.photo]
            tenant, photo, person = face.tenant, self.rng.choice(others or [face.photo]), face.person
        form = self.photo_form("file", photo, self.photos[photo], {"tenant": tenant})
        answer = await self.call("POST", "/v1/faces/search", **form)
        self.tally("search", answer)
        if answer.status == 200:
            matches = (answer.body.get("searchResult") or {}).get("matches") or []
            if person is None:
                self.quality["stranger_searches"] += 1
                self.quality["stranger_matched"] += bool(matches)
            else:
                top = self.faces.get(matches[0]["id"]) if matches else None
                self.quality["person_searches"] += 1
                self.quality["person_top1_right"] += top is not None and top.person == person
        return True

    async def op_verify(self) -> bool:
        face = self.pick_live(need_second_photo=True)
        if face is None:
            return False
        probe = self.rng.choice([p for p in self.people[face.person] if p != face.photo])
        face.users += 1  # a delete must not pick it while this runs: its 404 would look like a lost write
        try:
            form = self.photo_form(
                "probes", probe, self.photos[probe], {"tenant": face.tenant, "reference_id": face.id}
            )
            answer = await self.call("POST", "/v1/faces/verify", **form)
        finally:
            face.users -= 1
        self.tally("verify", answer)
        if answer.status == 200:
            self.quality["verifies"] += 1
            self.quality["verify_matched"] += bool(answer.body.get("matched"))
        elif answer.status == 404:
            self.during_run.append({"id": face.id, "op": "verify", "status": 404, "code": answer.error})
        return True

    async def op_delete(self) -> bool:
        idle = [f for f in self.live.values() if f.users == 0]
        if not idle:
            return False
        face = self.rng.choice(idle)
        face.state = "deleting"
        del self.live[face.id]
        answer = await self.call("DELETE", "/v1/faces/delete", params={"id": face.id, "tenant": face.tenant})
        self.tally("delete", answer)
        if answer.status == 200:
            face.state = "deleted"
            self.per_photo[face.tenant, face.photo] -= 1
        elif answer.status == 404:  # an acknowledged insert that nobody deleted is gone: a lost write
            face.state = "deleted"
            self.per_photo[face.tenant, face.photo] -= 1
            self.during_run.append({"id": face.id, "op": "delete", "status": 404, "code": answer.error})
        else:
            face.state = "delete_failed"  # may be half done (the docs say a retried delete finishes it)
        return True

    # -- the load

    async def worker(self, deadline: float) -> None:
        ops = {"insert": self.op_insert, "search": self.op_search, "verify": self.op_verify, "delete": self.op_delete}
        names, weights = zip(*self.args.mix.items(), strict=True)
        while time.monotonic() < deadline:  # bounded by the deadline; each pass sends one request
            op = self.rng.choices(names, weights)[0]
            if not await ops[op]():  # nothing to verify / delete yet: insert instead
                await (self.op_insert() if op != "insert" else self.op_search())

    async def sample_memory(self, stop: asyncio.Event) -> None:
        while True:
            sample: dict[str, float] = {"t": round(time.monotonic() - self.t0, 1)}
            for name, pid in self.pids.items():
                rss, cpu = tree_rss_mib(pid), tree_cpu_seconds(pid)
                if rss is not None:
                    sample[f"{name}_mib"], sample[f"{name}_main_mib"] = round(rss[0], 1), round(rss[1], 1)
                if cpu is not None:
                    sample[f"{name}_cpu_s"] = round(cpu, 2)
            sample["live_faces"] = len(self.live)
            if len(sample) > 2:
                self.memory.append(sample)
            try:
                await asyncio.wait_for(stop.wait(), self.args.sample_every)
                return
            except TimeoutError:
                pass

    async def run_load(self) -> None:
        self.t0 = time.monotonic()
        stop = asyncio.Event()
        sampler = asyncio.create_task(self.sample_memory(stop))
        deadline = self.t0 + self.args.duration
        await asyncio.gather(*(self.worker(deadline) for _ in range(self.args.concurrency)))
        self.load_seconds = time.monotonic() - self.t0  # includes the last requests in flight at the deadline
        stop.set()
        await sampler

    # -- the check after the load

    async def patient(self, method: str, url: str, **kwargs: Any) -> Answer:
        """A request of the final check: retried (bounded) while the answer is 503 / 429 or no answer at all."""
        answer = await self.call(method, url, **kwargs)
        for attempt in range(8):
            if answer.status not in (None, 429, 503):
                break
            wait = answer.retry_after
            await asyncio.sleep(min(5.0, float(wait) if wait and wait.isdigit() else 0.5 * (attempt + 1)))
            answer = await self.call(method, url, **kwargs)
        return answer

    async def check(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(self.args.concurrency)
        live = [f for f in self.faces.values() if f.state == "live"]
        deleted = [f for f in self.faces.values() if f.state == "deleted"]
        unacked = [f for f in self.faces.values() if f.state in ("insert_failed", "insert_unknown")]
        lost: dict[str, str] = {}
        resurrected: dict[str, str] = {}
        unchecked: dict[str, str] = {}
        phantoms: list[str] = []
        unknown_stored: list[str] = []
        top1 = 0

        async def get(face: Face) -> None:
            async with gate:
                answer = await self.patient("GET", f"/v1/faces/get/{face.id}", params={"tenant": face.tenant})
            if face.state == "live":
                if answer.status == 404:
                    lost[face.id] = "GET 404"
                elif answer.status != 200:
                    unchecked[face.id] = f"GET {answer.status or answer.error}"
            elif face.state == "deleted":
                if answer.status == 200:
                    resurrected[face.id] = "GET 200"
                elif answer.status != 404:
                    unchecked[face.id] = f"GET {answer.status or answer.error}"
            elif answer.status == 200 and face.state == "insert_failed":
                phantoms.append(face.id)  # refused, yet stored: a 503 insert must leave nothing behind
            elif answer.status == 200:
                unknown_stored.append(face.id)  # no answer reached us; stored or not are both fine

        # One search per (tenant, enrolment photo) covers every id enrolled with that photo in that tenant.
        groups: dict[tuple[str, str], list[Face]] = defaultdict(list)
        for face in live + deleted:
            groups[face.tenant, face.photo].append(face)

        async def search(tenant: str, photo: str, faces: list[Face]) -> None:
            nonlocal top1
            form = self.photo_form("file", photo, self.photos[photo], {"tenant": tenant})
            async with gate:
                answer = await self.patient("POST", "/v1/faces/search", params={"top_k": 100}, **form)
            result = answer.body.get("searchResult") or {}
            if answer.status != 200 or result.get("skipped_reason"):
                why = f"search {answer.status or answer.error} {result.get('skipped_reason') or ''}".strip()
                for face in faces:
                    unchecked.setdefault(face.id, why)
                return
            ids = [m["id"] for m in result.get("matches") or []]
            for face in faces:
                if face.state == "live":
                    if face.id not in ids:
                        lost.setdefault(face.id, "not found by a search with its enrolment photo")
                    elif ids[0] == face.id:
                        top1 += 1
                elif face.id in ids:
                    resurrected.setdefault(face.id, "still found by search")

        t = time.monotonic()
        await asyncio.gather(
            *(get(f) for f in live + deleted + unacked), *(search(t_, p, fs) for (t_, p), fs in groups.items())
        )
        for item in self.during_run:  # the service denied an acknowledged face while the load ran
            lost.setdefault(item["id"], f"{item['op']} answered {item['status']} {item['code'] or ''}".strip())
        unchecked = {k: v for k, v in unchecked.items() if k not in lost and k not in resurrected}
        return {
            "check_seconds": round(time.monotonic() - t, 1),
            "inserts_acknowledged": sum(
                f.state in ("live", "deleting", "deleted", "delete_failed") for f in self.faces.values()
            ),
            "deletes_acknowledged": len(deleted),
            "live_checked": len(live),
            "live_top1": top1,
            "deleted_checked": len(deleted),
            "searches": len(groups),
            "lost_writes": len(lost),
            "lost": dict(sorted(lost.items())[:50]),
            "resurrected_deletes": len(resurrected),
            "resurrected": dict(sorted(resurrected.items())[:50]),
            "unchecked": len(unchecked),
            "unchecked_ids": dict(sorted(unchecked.items())[:50]),
            "inserts_not_acknowledged": len(unacked),
            "phantom_inserts": len(phantoms),
            "unanswered_inserts_stored": len(unknown_stored),
            "deletes_not_acknowledged": sum(f.state == "delete_failed" for f in self.faces.values()),
        }

    # -- the report

    def report(self) -> dict[str, Any]:
        seconds = self.load_seconds
        ops = {op: self.stats[op].summary(seconds) for op in OPS}
        statuses: Counter[str] = Counter()
        for s in self.stats.values():
            statuses.update(s.statuses)
        totals = {
            "requests": sum(s.requests for s in self.stats.values()),
            "ok": sum(s.ok for s in self.stats.values()),
            "statuses": dict(sorted(statuses.items())),
            "shed_503": sum(s.shed_503 for s in self.stats.values()),
            "other_503": sum(s.other_503 for s in self.stats.values()),
            "http_500": sum(s.http_500 for s in self.stats.values()),
            "other_5xx": sum(s.other_5xx for s in self.stats.values()),
            "no_answer": sum(v for k, v in statuses.items() if not k.isdigit()),
        }
        totals["rate_per_s"] = round(totals["requests"] / seconds, 2) if seconds > 0 else 0.0
        q = self.quality
        memory: dict[str, Any] = {"interval_s": self.args.sample_every, "samples": self.memory}
        for name in self.pids:
            memory[name] = _series_summary([s[f"{name}_mib"] for s in self.memory if f"{name}_mib" in s])
            memory[f"{name}_main"] = _series_summary(
                [s[f"{name}_main_mib"] for s in self.memory if f"{name}_main_mib" in s]
            )
            cpu = [(s["t"], s[f"{name}_cpu_s"]) for s in self.memory if f"{name}_cpu_s" in s]
            if len(cpu) > 1 and cpu[-1][0] > cpu[0][0]:
                memory[f"{name}_cores"] = round((cpu[-1][1] - cpu[0][1]) / (cpu[-1][0] - cpu[0][0]), 2)
        per_minute = []
        for minute in sorted(self.by_minute):
            # Only whole minutes: the last, cut by the deadline, would show a misleading rate.
            if (minute + 1) * 60 > seconds + 1:
                continue
            row: dict[str, Any] = {"minute": minute, "live_faces_at_end": self.live_by_minute.get(minute)}
            for op in OPS:
                values = self.by_minute[minute].get(op, [])
                row[op] = {
                    "ok_per_s": round(len(values) / 60, 2),
                    "p50_ms": round(percentile(values, 50), 1),
                    "p95_ms": round(percentile(values, 95), 1),
                }
            per_minute.append(row)
        last = max(self.timeline, default=-1)
        timeline = [
            {"t": i * self.args.sample_every, **{op: self.timeline[i][op] for op in OPS}} for i in range(last + 1)
        ]
        return {
            "load_seconds": round(seconds, 1),
            "operations": ops,
            "totals": totals,
            "quality": {
                "verify_matched": f"{q['verify_matched']}/{q['verifies']}",
                "search_top1_right_person": f"{q['person_top1_right']}/{q['person_searches']}",
                "stranger_search_matched": f"{q['stranger_matched']}/{q['stranger_searches']}",
            },
            "memory": memory,
            "timeline": timeline,
            "per_minute": per_minute,
        }


# --------------------------------------------------------------------------------------------- set-up


async def screen_photos(client: httpx.AsyncClient, names: Sequence[str], shared: Path, tenant: str) -> dict[str, bytes]:
    """The photos the service accepts (quality passed, one face), asked through the API's own search."""
    gate = asyncio.Semaphore(4)
    accepted: dict[str, bytes] = {}

    async def one(name: str) -> None:
        data = (shared / "faces" / "deepface" / name).read_bytes()
        payload = multipart_payload({"file": (name, data, "image/jpeg")}, {"tenant": tenant}, name=name)
        for attempt in range(5):  # bounded: a 503 / 429 during start-up is retried
            async with gate:
                response = await client.post("/v1/faces/search", content=payload.content, headers=payload.headers)
            if response.status_code not in (429, 503):
                break
            await asyncio.sleep(0.5 * (attempt + 1))
        response.raise_for_status()
        quality = response.json().get("imageQualityAssessment") or {}
        if quality.get("passed") and quality.get("faces_count") == 1:
            accepted[name] = data

    await asyncio.gather(*(one(n) for n in names))
    return accepted


def split_people(groups: list[list[str]], accepted: dict[str, bytes]) -> tuple[list[list[str]], list[str]]:
    """(people to enrol: two or more accepted photos each, photos of strangers: people held out, never enrolled)."""
    people = [[p for p in g if p in accepted] for g in groups]
    people = [g for g in people if g]
    enrolled, strangers = [], []
    for i, group in enumerate(people):
        # Every 4th person (and anyone with a single usable photo) is a stranger: searched for, never enrolled.
        (strangers.extend(group) if i % 4 == 3 or len(group) < 2 else enrolled.append(group))
    return enrolled, strangers


def create_admin_key(env: dict[str, str], cwd: Path) -> str:
    cmd = [sys.executable, "-m", "faceauth.cli", "--log-level", "warning", "keys", "create", "--admin"]
    done = subprocess.run([*cmd, "--name", "soak"], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"faceauth keys create failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1].strip()


def start_services(args: argparse.Namespace, tmp: Path) -> tuple[FaceauthService, FaceauthService, str]:
    """Both services on free loopback ports, embedded stores under ``tmp`` (not started yet); returns them and an
    admin key."""
    log_dir = args.log_dir or tmp
    log_dir.mkdir(parents=True, exist_ok=True)
    ml_settings = {"ML_SERVICE_MODEL_DIR": str(tmp / "models"), "ML_SERVICE_AUTO_FETCH": "false"}
    api_settings = {
        "FACEAUTH_MILVUS_URI": "",
        "FACEAUTH_OBJECT_STORE": "local",
        # One key carries the traffic of what would be many clients: its rate limit must not shape the load.
        "FACEAUTH_RATE_LIMIT_PER_SECOND": "10000",
        "FACEAUTH_RATE_LIMIT_BURST": "10000",
    }
    # cwd = the temporary folder: a stray .env in the working directory must not change the services.
    ml_settings.update(spoof_model_env(args.shared_dir))
    ml = FaceauthService("ml", ml_env(ml_settings), cwd=tmp, log_path=log_dir / "ml.log")
    api = FaceauthService("api", api_env(ml.url, tmp / "data", api_settings), cwd=tmp, log_path=log_dir / "api.log")
    key = create_admin_key(api.env, tmp)  # before the API starts, on its settings (data folder)
    return ml, api, key


# --------------------------------------------------------------------------------------------- output


def markdown(report: dict[str, Any]) -> str:
    ops, totals, writes, memory = report["operations"], report["totals"], report["writes"], report["memory"]
    lines = [
        f"load {report['load_seconds']:.0f} s at concurrency {report['config']['concurrency']}, "
        f"{totals['requests']} requests ({totals['rate_per_s']:.2f}/s)",
        "",
        "| operation | requests | req/s | 2xx | p50 ms | p95 ms | p99 ms | statuses | 503 shed | other 503 | 500 |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for op, s in ops.items():
        statuses = ", ".join(f"{k}: {v}" for k, v in s["statuses"].items())
        lines.append(
            f"| {op} | {s['requests']} | {s['rate_per_s']:.2f} | {s['ok']} | {s['p50_ms']:.0f} | {s['p95_ms']:.0f} | "
            f"{s['p99_ms']:.0f} | {statuses} | {s['shed_503']} | {s['other_503']} | {s['http_500']} |"
        )
    lines += ["", "| service | RSS first MiB | min | max | last | CPU cores |", "|---|---:|---:|---:|---:|---:|"]
    for name in report["config"]["services"]:
        for key in (name, f"{name}_main"):
            m = memory.get(key)
            if m:
                label = f"{name} (process tree)" if key == name else f"{name} (main process)"
                cores = memory.get(f"{name}_cores", "") if key == name else ""
                lines.append(f"| {label} | {m['first']} | {m['min']} | {m['max']} | {m['last']} | {cores} |")
    if report["per_minute"]:
        head = " | ".join(f"{op} /s | {op} p50 ms" for op in OPS)
        lines += ["", f"| minute | live faces | {head} |", "|---:|---:|" + "---:|" * 2 * len(OPS)]
        for row in report["per_minute"]:
            cells = " | ".join(f"{row[op]['ok_per_s']:.2f} | {row[op]['p50_ms']:.0f}" for op in OPS)
            lines.append(f"| {row['minute']} | {row['live_faces_at_end']} | {cells} |")
    lines += [
        "",
        f"writes: {writes['inserts_acknowledged']} inserts and {writes['deletes_acknowledged']} deletes acknowledged; "
        f"checked {writes['live_checked']} live ({writes['live_top1']} top-1) and {writes['deleted_checked']} deleted "
        f"in {writes['check_seconds']} s",
        f"lost writes: {writes['lost_writes']}, resurrected deletes: {writes['resurrected_deletes']}, "
        f"unchecked: {writes['unchecked']}, phantom inserts: {writes['phantom_inserts']}",
        f"quality: {json.dumps(report['quality'])}",
        f"result: {'PASS' if report['passed'] else 'FAIL: ' + '; '.join(report['failures'])}",
    ]
    return "\n".join(lines)


def plot(report: dict[str, Any], out: Path) -> None:
    import matplotlib  # a dev dependency: only --plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["memory"]["samples"]
    fig, (top, bottom, lowest) = plt.subplots(3, 1, figsize=(9, 8.5), sharex=True)
    for name in report["config"]["services"]:
        points = [(s["t"] / 60, s[f"{name}_mib"]) for s in samples if f"{name}_mib" in s]
        if points:
            top.plot(*zip(*points, strict=True), label=f"{name} (process tree)")
    top.set_ylabel("RSS, MiB")
    top.set_ylim(bottom=0)
    top.grid(alpha=0.3)
    # The live faces on a second axis: the API's memory is expected to follow the data it holds.
    faces = top.twinx()
    points = [(s["t"] / 60, s["live_faces"]) for s in samples if "live_faces" in s]
    if points:
        faces.plot(*zip(*points, strict=True), color="grey", linestyle="--", label="live faces (right axis)")
    faces.set_ylabel("live faces")
    faces.set_ylim(bottom=0)
    handles = top.get_legend_handles_labels()[0] + faces.get_legend_handles_labels()[0]
    top.legend(handles=handles, loc="lower right")
    # Throughput in about 40 bins (a 5 s bin of a 10-minute run is mostly noise); the bin the deadline cuts is left out.
    base = report["config"]["sample_every"]
    per_bin = max(1, round(len(report["timeline"]) / 40))
    step = base * per_bin
    rows = [r for r in report["timeline"] if r["t"] + base <= report["config"]["duration_s"]]
    bins = [rows[i : i + per_bin] for i in range(0, len(rows) - per_bin + 1, per_bin)]
    for op in OPS:
        points = [((b[0]["t"] + step / 2) / 60, sum(r[op] for r in b) / step) for b in bins]
        if points:
            bottom.plot(*zip(*points, strict=True), label=op)
    bottom.set_ylabel(f"2xx answers/s ({step:g} s bins)")
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="upper right", ncol=4)
    bottom.grid(alpha=0.3)
    for op in OPS:
        points = [(row["minute"] + 0.5, row[op]["p50_ms"]) for row in report["per_minute"]]
        if points:
            lowest.plot(*zip(*points, strict=True), marker="o", label=op)
    lowest.set_ylabel("p50 latency per minute, ms")
    lowest.set_ylim(bottom=0)
    lowest.set_xlabel("minutes into the load")
    lowest.legend(loc="upper left", ncol=4)
    lowest.grid(alpha=0.3)
    fig.suptitle(f"faceauth soak: {report['load_seconds']:.0f} s, concurrency {report['config']['concurrency']}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------- main


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in OPS:
            raise argparse.ArgumentTypeError(f"unknown operation {name!r} (one of {', '.join(OPS)})")
        mix[name.strip()] = float(weight)
    if sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("the weights must add up to more than 0")
    return mix


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description="Soak the Face API with a mixed load and check every write."
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients in flight (default 16)")
    parser.add_argument("--mix", type=parse_mix, default="insert=35,search=35,verify=20,delete=10")
    parser.add_argument("--tenants", type=int, default=4, help="tenants to start with (default 4)")
    parser.add_argument(
        "--per-photo-cap",
        type=int,
        default=10,
        help="live ids per photo and tenant, at most (a top-100 search must find them all); when every photo is "
        "at it, a new tenant is opened (default 10)",
    )
    parser.add_argument("--stranger-share", type=float, default=0.3, help="share of searches for strangers")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, s")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--api-url", default=None, help="soak a running API instead of starting the services")
    parser.add_argument("--api-key", default=os.environ.get("FACEAUTH_API_KEY"), help="with --api-url (admin key)")
    parser.add_argument("--api-pid", type=int, default=None, help="with --api-url: sample this process's RSS")
    parser.add_argument("--ml-pid", type=int, default=None, help="with --api-url: sample this process's RSS")
    parser.add_argument("--tenant-prefix", default="soak")
    parser.add_argument("--shared-dir", type=Path, default=None, help="default: $FACEAUTH_SHARED_DIR")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the services' logs here")
    parser.add_argument("--json", type=Path, default=None, help="write the report (JSON) here")
    parser.add_argument("--plot", type=Path, default=None, help="draw RSS and throughput over time (PNG) here")
    args = parser.parse_args(argv)
    if isinstance(args.mix, str):
        args.mix = parse_mix(args.mix)
    if args.api_url and not args.api_key:
        parser.error("--api-url needs --api-key (or FACEAUTH_API_KEY)")
    if args.duration <= 0 or args.concurrency < 1 or args.tenants < 1 or args.per_photo_cap < 1:
        parser.error("--duration, --concurrency, --tenants and --per-photo-cap must be positive")
    shared = args.shared_dir or os.environ.get("FACEAUTH_SHARED_DIR")
    if not shared:
        parser.error("set FACEAUTH_SHARED_DIR or pass --shared-dir")
    args.shared_dir = Path(shared).resolve()
    return args


async def soak(args: argparse.Namespace, api_url: str, key: str, pids: dict[str, int]) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
    headers = {"X-Api-Key": key}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=args.timeout, limits=limits) as client:
        groups = people_from_pairs(args.shared_dir / "faces" / "deepface" / "master.csv")
        names = sorted({p for g in groups for p in g})
        accepted = await screen_photos(client, names, args.shared_dir, f"{args.tenant_prefix}-screen")
        people, strangers = split_people(groups, accepted)
        if len(people) < 2 or not strangers:
            raise SystemExit(f"too few usable people: {len(people)} to enrol, {len(strangers)} stranger photos")
        say(
            f"{len(accepted)}/{len(names)} photos usable: {len(people)} people to enrol, "
            f"{len(strangers)} stranger photos"
        )
        runner = Soak(args, client, accepted, people, strangers, pids)
        load0, busy0, cpu0 = os.getloadavg(), machine_busy_seconds(), time.process_time()
        say(f"load for {args.duration:.0f} s at concurrency {args.concurrency} (load average {load0[0]:.2f})")
        await runner.run_load()
        busy1, cpu1, load1 = machine_busy_seconds(), time.process_time(), os.getloadavg()
        say(f"load done ({runner.load_seconds:.0f} s); checking {len(runner.faces)} ids")
        writes = await runner.check()
        report = runner.report()
        # The samples after the check show whether memory falls back once the load stops.
        for name, pid in pids.items():
            rss = tree_rss_mib(pid)
            if rss is not None:
                report["memory"][f"{name}_after_check_mib"] = round(rss[0], 1)
    report["writes"] = writes
    busy = None if busy0 is None or busy1 is None else (busy1 - busy0) / max(runner.load_seconds, 1e-9)
    report["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg_before": [round(v, 2) for v in load0],
        "loadavg_after": [round(v, 2) for v in load1],
        "busy_cores_during_load": None if busy is None else round(busy, 2),
        "soak_client_cores": round((cpu1 - cpu0) / max(runner.load_seconds, 1e-9), 2),
    }
    report["photos"] = {"usable": len(accepted), "people_enrolled": len(people), "stranger_photos": len(strangers)}
    report["tenants"] = runner.tenants
    return report


def failures_of(report: dict[str, Any]) -> list[str]:
    """Why the soak failed (an empty list: it passed)."""
    failures: list[str] = []
    totals, writes = report["totals"], report["writes"]
    if writes["lost_writes"]:
        failures.append(f"{writes['lost_writes']} acknowledged writes lost")
    if writes["resurrected_deletes"]:
        failures.append(f"{writes['resurrected_deletes']} acknowledged deletes resurrected")
    if writes["unchecked"]:
        failures.append(f"{writes['unchecked']} acknowledged writes could not be checked")
    if totals["http_500"]:
        failures.append(f"{totals['http_500']} answers were 500")
    if totals["other_5xx"]:
        failures.append(f"{totals['other_5xx']} answers were 5xx other than 500 / 503")
    return failures


async def amain(args: argparse.Namespace) -> int:
    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp_name:
        tmp = Path(tmp_name)
        if args.api_url:
            pids = {name: pid for name, pid in (("api", args.api_pid), ("ml", args.ml_pid)) if pid}
            report = await soak(args, args.api_url.rstrip("/"), args.api_key, pids)
        else:
            ml, api, key = start_services(args, tmp)
            try:
                # Both boot at once (the API's readiness waits for the ML service's); a failed start stops itself.
                boot = await asyncio.gather(
                    asyncio.to_thread(ml.start), asyncio.to_thread(api.start), return_exceptions=True
                )
                for outcome in boot:
                    if isinstance(outcome, BaseException):
                        raise outcome
                say(f"services ready (ML {ml.startup_s:.1f} s, API {api.startup_s:.1f} s)")
                assert ml.pid is not None and api.pid is not None
                report = await soak(args, api.url, key, {"api": api.pid, "ml": ml.pid})
            finally:
                say("stopping the services")
                api.stop()
                ml.stop()
    failures = failures_of(report)
    report = {
        "started": started.isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "config": {
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "mix": args.mix,
            "tenants": args.tenants,
            "per_photo_cap": args.per_photo_cap,
            "sample_every": args.sample_every,
            "own_services": not args.api_url,
            "services": ["api", "ml"],
        },
        **report,
        "failures": failures,
        "passed": not failures,
    }
    print(markdown(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    if args.plot:
        plot(report, args.plot)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(amain(parse_args())))
