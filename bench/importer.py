"""`faceauth import` speed against a running Face API (`faceauth up`): faces per second with single inserts at
each concurrency, and with the batch endpoint.

The shared test photos are copied as flat files, N copies each under new ids (each copy is a new face), into a
temporary folder; each run imports them into a fresh tenant (an admin key acts for it), which is purged afterwards.
Photos the ML service refuses (several faces, no face) count as handled, not as enrolled: the rate printed is
enrolled faces per second, as the command reports it.

Run (a Face API must be up; FACEAUTH_API_KEY an admin key)::

    FACEAUTH_SHARED_DIR=../shared FACEAUTH_URL=http://127.0.0.1:8000 FACEAUTH_API_KEY=fa_... \\
        uv run python -m bench.importer --copies 2 --runs single:1,single:4,batch:4x8
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.photos import photo_paths

_RESULT = re.compile(r"(\d+) enrolled, (\d+) already enrolled, (\d+) refused")


def _run(folder: Path, tenant: str, mode: str) -> tuple[float, int, int]:
    kind, _, shape = mode.partition(":")
    concurrency, _, batch = shape.partition("x")
    args = ["--concurrency", concurrency or "1", "--batch", (batch or "8") if kind == "batch" else "1"]
    report = folder.parent / f"{tenant}.csv"
    command = [sys.executable, "-m", "faceauth", "import", str(folder), "--tenant", tenant, "--quiet", *args]
    started = time.perf_counter()
    done = subprocess.run([*command, "--report", str(report)], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    match = _RESULT.search(done.stderr)
    assert match, done.stderr
    subprocess.run(
        [sys.executable, "-m", "faceauth", "tenants", "purge", tenant, "--yes"], check=True, capture_output=True
    )
    return seconds, int(match.group(1)), int(match.group(3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=2, help="copies of each shared photo (new ids)")
    parser.add_argument("--runs", default="single:1,single:4,batch:4x8", help="single:C or batch:CxB, comma-separated")
    args = parser.parse_args(argv)
    shared = Path(os.environ["FACEAUTH_SHARED_DIR"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for path in photo_paths(shared):
            for n in range(args.copies):
                shutil.copy(path, folder / f"{path.stem}_{n}{path.suffix}")
        count = len(list(folder.iterdir()))
        print(f"{count} photos; URL {os.environ.get('FACEAUTH_URL', 'http://127.0.0.1:8000')}")
        print(f"{'run':<14} {'seconds':>8} {'enrolled':>9} {'refused':>8} {'faces/s':>8} {'photos/s':>9}")
        for i, mode in enumerate(args.runs.split(",")):
            seconds, enrolled, refused = _run(folder, f"bench-import-{os.getpid()}-{i}", mode)
            rates = f"{enrolled / seconds:>8.1f} {count / seconds:>9.1f}"
            print(f"{mode:<14} {seconds:>8.1f} {enrolled:>9} {refused:>8} {rates}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
