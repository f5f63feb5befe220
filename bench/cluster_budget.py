"""The clustering attack of issue 14 against a real Face API process: how much its peak memory rises.

``faceauth ml`` and ``faceauth api`` start as subprocesses on free loopback ports (the API on its embedded
defaults in a temporary data folder, keys off). Each attack below is sent to ``POST /v1/faces/cluster``; the
API's answer, its time and the rise of the API process's peak RSS (``VmHWM`` in ``/proc/<pid>/status``, Linux
only) over its peak before the attacks are printed.

Run::

    FACEAUTH_SHARED_DIR=../shared uv run python -m bench.cluster_budget
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.servers.services import FaceauthService, api_env, ml_env, spoof_model_env

DIM = 512


def peak_rss_mb(pid: int) -> float:
    """The peak resident size of `pid` (VmHWM) in MB; the API runs in a child of the launcher's wrapper."""
    pids = [pid, *[int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]]
    peaks = []
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


ATTACKS = {
    "20,000 identical 1-d vectors (the issue's request)": {"embeddings": [[1.0]] * 20000, "eps": 0.5},
    "20,000 identical 512-d vectors": {"embeddings": [[1.0] * DIM] * 20000, "eps": 0.5},
    "2,000 identical 512-d vectors, eps 1 (4e6 pairs, under the budget: clustered)": {
        "embeddings": [[1.0] * DIM] * 2000,
        "eps": 1.0,
    },
    "eps 2": {"embeddings": [[1.0] * DIM] * 10, "eps": 2.0},
}


def main() -> None:
    shared = os.environ.get("FACEAUTH_SHARED_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        ml_settings = {**spoof_model_env(Path(shared) if shared else None), "ML_SERVICE_AUTO_FETCH": "false"}
        with FaceauthService("ml", ml_env(ml_settings), ready_timeout=180) as ml:
            env = api_env(ml.url, Path(tmp) / "data", {"FACEAUTH_AUTH_DISABLED": "true"})
            with FaceauthService("api", env, ready_timeout=120) as api:
                assert api.pid is not None
                before = peak_rss_mb(api.pid)
                print(f"Face API peak RSS before: {before:.0f} MB")
                with httpx.Client(base_url=api.url, timeout=300) as client:
                    for name, body in ATTACKS.items():
                        raw = json.dumps(body).encode()
                        start = time.perf_counter()
                        r = client.post("/v1/faces/cluster", content=raw, headers={"Content-Type": "application/json"})
                        took = time.perf_counter() - start
                        code = r.json().get("error", {}).get("code", "ok") if r.content else "-"
                        rise = peak_rss_mb(api.pid) - before
                        print(
                            f"{name}: {len(raw) / 1e6:.1f} MB body -> {r.status_code} {code} "
                            f"in {took:.2f} s; peak RSS +{rise:.0f} MB"
                        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
