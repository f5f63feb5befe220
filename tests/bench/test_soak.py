"""bench.soak, the whole thing: both services started by the soak, a one-minute mixed load, the write check.

The soak runs as a subprocess, as an operator would run it; the JSON report is what is asserted on.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench import soak

OPS = ("insert", "search", "verify", "delete")


# -- the checker against a fake API that misbehaves on purpose (fast, no services) ------------------------------


class FakeAPI:
    """Enough of the Face API for the soak: faces kept in a dict; search finds the ids enrolled with that photo."""

    def __init__(self) -> None:
        self.faces: dict[tuple[str, str], str] = {}  # (tenant, id) -> photo name
        self.shed_every = 7  # every 7th insert is shed (503 ml_overloaded + Retry-After), as an overloaded ML is

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        if path.startswith("/v1/faces/get/"):
            found = (params["tenant"], path.rsplit("/", 1)[1]) in self.faces
            return httpx.Response(200 if found else 404, json={})
        if path == "/v1/faces/delete":
            gone = self.faces.pop((params["tenant"], params["id"]), None)
            return httpx.Response(200 if gone else 404, json={})
        body = request.read().decode("latin-1")
        form = dict(re.findall(r'name="(\w+)"\r\n\r\n([^\r]*)', body))
        photo = re.search(r'filename="([^"]+)"', body).group(1)
        quality = {"passed": True, "faces_count": 1}
        if path == "/v1/faces/insert":
            self.shed_every -= 1
            if self.shed_every == 0:
                self.shed_every = 7
                error = {"error": {"code": "ml_overloaded", "message": "busy"}}
                return httpx.Response(503, json=error, headers={"Retry-After": "1"})
            self.faces[form["tenant"], form["id"]] = photo
            return httpx.Response(200, json={})
        if path == "/v1/faces/search":
            ids = [i for (t, i), p in self.faces.items() if t == form["tenant"] and p == photo]
            matches = [{"id": i, "subject_id": i, "score": 0.99} for i in ids]
            return httpx.Response(200, json={"imageQualityAssessment": quality, "searchResult": {"matches": matches}})
        if path == "/v1/faces/verify":
            found = (form["tenant"], form["reference_id"]) in self.faces
            return httpx.Response(200 if found else 404, json={"matched": True})
        return httpx.Response(500, json={})


def run_fake_soak(sabotage) -> tuple[dict, dict]:
    args = soak.parse_args(["--duration", "0.5", "--concurrency", "4", "--seed", "3", "--shared-dir", "/nonexistent"])
    fake = FakeAPI()
    photos = {name: name.encode() for name in ("a1", "a2", "b1", "b2", "c1", "s1")}

    async def go() -> tuple[dict, dict]:
        async with httpx.AsyncClient(base_url="http://fake", transport=httpx.MockTransport(fake)) as client:
            runner = soak.Soak(args, client, photos, [["a1", "a2"], ["b1", "b2"], ["c1"]], ["s1"], {})
            await runner.run_load()
            sabotage(fake, runner)
            return await runner.check(), runner.report()

    return asyncio.run(go())


def test_the_checker_passes_an_api_that_keeps_every_write():
    writes, report = run_fake_soak(lambda fake, runner: None)
    assert writes["lost_writes"] == writes["resurrected_deletes"] == writes["unchecked"] == 0
    assert writes["live_checked"] > 0 and writes["deleted_checked"] > 0
    assert all(report["operations"][op]["ok"] > 0 for op in OPS)
    # The shed inserts are counted apart, are not acknowledged, and fail nothing.
    assert report["totals"]["shed_503"] > 0 and report["totals"]["http_500"] == 0
    assert writes["inserts_not_acknowledged"] == report["totals"]["shed_503"]
    assert soak.failures_of({**report, "writes": writes}) == []


def test_the_checker_finds_a_lost_write_and_a_resurrected_delete():
    lost, back = [], []

    def sabotage(fake: FakeAPI, runner) -> None:
        live = next(f for f in runner.faces.values() if f.state == "live")
        deleted = next(f for f in runner.faces.values() if f.state == "deleted")
        del fake.faces[live.tenant, live.id]  # an acknowledged insert vanishes
        fake.faces[deleted.tenant, deleted.id] = deleted.photo  # an acknowledged delete comes back
        lost.append(live.id)
        back.append(deleted.id)

    writes, report = run_fake_soak(sabotage)
    assert writes["lost_writes"] == 1 and list(writes["lost"]) == lost
    assert writes["resurrected_deletes"] == 1 and list(writes["resurrected"]) == back
    failures = soak.failures_of({**report, "writes": writes})
    assert any("lost" in f for f in failures) and any("resurrected" in f for f in failures)


def test_a_500_fails_the_soak_and_503_shedding_does_not():
    report = {"totals": {"http_500": 0, "other_5xx": 0, "shed_503": 9, "other_503": 1}}
    report["writes"] = {"lost_writes": 0, "resurrected_deletes": 0, "unchecked": 0}
    assert soak.failures_of(report) == []
    report["totals"]["http_500"] = 1
    assert soak.failures_of(report) == ["1 answers were 500"]


# -- the whole soak, with both real services -------------------------------------------------------------------


@pytest.mark.slow
def test_a_one_minute_soak_loses_no_acknowledged_write(shared_dir: Path, spoof_model_path: Path, tmp_path: Path):
    out = tmp_path / "soak.json"
    env = {
        **os.environ,
        "FACEAUTH_SHARED_DIR": str(shared_dir),
        "ML_SERVICE_SPOOF_LOCAL_MODEL_PATH": str(spoof_model_path),
    }
    cmd = [sys.executable, "-m", "bench.soak", "--duration", "60", "--concurrency", "16", "--seed", "7"]
    cmd += ["--json", str(out), "--log-dir", str(tmp_path / "logs"), "--sample-every", "3"]
    # Bounded: start-up, the minute of load and the check take ~90 s; a hang must not hold CI for long.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, f"soak failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"

    report = json.loads(out.read_text())
    assert report["passed"] and report["failures"] == []
    writes = report["writes"]
    assert writes["lost_writes"] == 0, writes["lost"]
    assert writes["resurrected_deletes"] == 0, writes["resurrected"]
    assert writes["unchecked"] == 0, writes["unchecked_ids"]
    assert writes["live_checked"] > 0 and writes["deleted_checked"] > 0
    assert writes["live_checked"] + writes["deleted_checked"] <= writes["inserts_acknowledged"]

    totals = report["totals"]
    assert totals["http_500"] == 0 and totals["other_5xx"] == 0, totals["statuses"]
    for op in OPS:
        stats = report["operations"][op]
        assert stats["ok"] > 0, f"no {op} was acknowledged: {stats['statuses']}"
        assert stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    assert report["load_seconds"] >= 60

    # RSS of both services over time: several samples of each, with plausible sizes.
    memory = report["memory"]
    assert len(memory["samples"]) >= 5
    for name in ("api", "ml"):
        assert all(s[f"{name}_mib"] > 20 for s in memory["samples"]), name
        assert memory[name]["min"] <= memory[name]["last"] <= memory[name]["max"]
