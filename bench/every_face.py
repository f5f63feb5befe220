"""What each extra face costs on /v1/analyze: faces=all against faces=largest, on photos of 1, 2 and 6 faces.

    python -m bench.every_face [--runs 15]

Loads the ML service's models in this process (settings from ML_SERVICE_*) and runs the pipeline in one thread,
one photo at a time, alternating the two modes so that a busy machine slows both alike. Prints each photo's
median time per mode and the extra time per face beyond the first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench.machine import cores, cpu_name
from bench.photos import faces_dir
from faceauth.config import MLSettings
from faceauth.inference.app import load_service
from faceauth.inference.service import _ASSESS

PHOTOS = ("img1.jpg", "couple.jpg", "selfie-many-people.jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    shared = Path(os.environ.get("FACEAUTH_SHARED_DIR", "../shared"))
    service = load_service(MLSettings())
    pipeline = service.pipeline
    tasks = _ASSESS | {"embed"}
    print(f"# {cpu_name()}, {cores()} cores, {args.runs} runs per mode, nsfw+spoof+blur+embed")
    print(f"{'photo':<26}{'faces':>6}{'largest ms':>12}{'all ms':>10}{'per extra face ms':>19}")
    for name in PHOTOS:
        data = (faces_dir(shared) / name).read_bytes()
        times: dict[bool, list[float]] = {False: [], True: []}
        faces = 1
        for run in range(args.runs + 1):
            for every in (False, True):
                started = time.perf_counter()
                findings = pipeline.analyze(data, tasks, every_face=every)
                if run:  # the first run of each mode warms up
                    times[every].append((time.perf_counter() - started) * 1000)
                if every:
                    faces = len(findings.subjects)
        largest, every = statistics.median(times[False]), statistics.median(times[True])
        extra = f"{(every - largest) / (faces - 1):.1f}" if faces > 1 else "-"
        print(f"{name:<26}{faces:>6}{largest:>12.1f}{every:>10.1f}{extra:>19}")


if __name__ == "__main__":
    main()
