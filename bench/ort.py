"""ONNX Runtime on this CPU: the compute-bound ceiling of /v1/analyze, a tuning grid of session options, and
the int8 face models' accuracy and speed.

    uv run python -m bench.ort ceiling [--measured IMG_PER_S]   # FLOPs, FLOP/s, ceiling (and the ratio)
    uv run python -m bench.ort grid [--rounds 3]                # session options x thread layouts
    uv run python -m bench.ort int8                             # quantize, then accuracy and speed
    uv run python -m bench.ort service                          # /v1/analyze with and without the rewrite

**Ceiling.** The FLOPs of the models /v1/analyze runs per image (2 x MACs of Conv/Gemm/MatMul,
`faceauth.inference.tools.flops`) at the shapes it runs them at: detector at the coarse size (320x320; also the mean
over the test photos, whose inputs follow each photo's aspect ratio and sometimes need the 640 pass), NSFW
320x320, anti-spoof 80x80, embedder 112x112. Each model's FLOP/s is measured in a large-batch run (batch 32,
all cores as intra-op threads) of the model the service loads (through the loader and the ML_SERVICE_* settings,
so int8 settings apply). The ceiling is 1 / sum over models of (FLOPs per image / FLOP/s): the images per
second the CPU could answer if it did nothing but these model runs at their best batched speed.
`ceiling()` is what `bench.all` calls.

**Grid.** Each configuration runs in a fresh process (so peak RSS is its own): the four models at the shapes
above, one image = detector, NSFW, anti-spoof, embedder in turn at batch 1 from each caller thread
concurrently, then the same at batch 8. It varies one thing at a time from the default session: graph
optimisation level, intra-op threads x callers (and shared or per-caller sessions), spinning, CPU memory arena
and memory pattern, and the PRelu rewrite.

**int8.** Makes int8 copies of the embedder and detector (`faceauth models quantize`) calibrated on the test
photos that no labelled pair uses, then compares them with fp32 on the photos the 300 pairs use.

The machine may be shared: every figure comes with the CPU other processes used while it was measured
(`other cores`), a measurement disturbed by more than --max-other cores is repeated (twice at most) and the
least disturbed kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.loadgen import wait_for_quiet
from bench.machine import cores, cpu_name, machine_busy_seconds, status_kib
from bench.photos import Pair, read_pairs
from bench.photos import faces_dir as shared_faces_dir
from faceauth.config import DEFAULT_MATCH_THRESHOLD, MLSettings
from faceauth.inference import rewrite
from faceauth.inference.artefacts import registry
from faceauth.inference.artefacts.registry import precision_path
from faceauth.inference.modelset import ModelSet
from faceauth.inference.tools.flops import count_flops

MODELS = ("detector", "nsfw", "spoof", "embedder")
# Value range of each model's input (normalised as the service feeds it); speed hardly depends on it.
INPUT_RANGE = {"detector": (-1.0, 1.0), "nsfw": (0.0, 1.0), "spoof": (0.0, 255.0), "embedder": (-1.0, 1.0)}
MAX_OTHER_CORES = 0.3


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")
    return [f for f in wanted if f in flags]


def machine() -> dict[str, Any]:
    return {
        "onnxruntime": ort.__version__,
        "cpu": cpu_name(),
        "cores": cores(),
        "cpu_flags": cpu_flags(),
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
    }


# -- measuring under other people's load --------------------------------------------------------------------


class Meter:
    """Wall time and the cores other processes used meanwhile (machine busy time minus this process's)."""

    def __enter__(self) -> Meter:
        self.wall0, self.busy0, self.own0 = time.perf_counter(), machine_busy_seconds(), _own_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        busy = machine_busy_seconds()
        own = _own_cpu() - self.own0
        self.other_cores = (
            None if busy is None or self.busy0 is None else max(0.0, (busy - self.busy0 - own) / self.wall)
        )


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def least_disturbed(measure: Callable[[], dict], max_other: float, retries: int = 2) -> dict:
    """`measure()` (a dict with `other_cores`) again while others used more than `max_other` cores."""
    best = measure()
    for _ in range(retries):
        if (best.get("other_cores") or 0.0) <= max_other:
            break
        asyncio.run(wait_for_quiet(max_cores=max_other + 0.2, timeout_s=30))
        again = measure()
        if (again.get("other_cores") or 0.0) < (best.get("other_cores") or 0.0):
            best = again
    return best


def time_runs(run: Callable[[], object], seconds: float, min_runs: int = 3) -> dict:
    """Median seconds per call of `run` over about `seconds` (after one warm-up call)."""
    run()
    times: list[float] = []
    with Meter() as meter:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < min_runs:
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(times)), "runs": len(times), "other_cores": meter.other_cores}


def own_mib(key: str) -> float:
    """VmRSS, VmHWM (the peak RSS) ... of this process in MiB (NaN where unknown)."""
    kib = status_kib("self", key)
    return kib / 1024 if kib else float("nan")


# -- the service's models ------------------------------------------------------------------------------------


def service_settings(**overrides: Any) -> MLSettings:
    """ML_SERVICE_* settings as the service reads them (environment, .env), never fetching models."""
    return MLSettings(**{"auto_fetch": False, **overrides})


def model_paths(settings: MLSettings) -> dict[str, Path]:
    """The files the loader opens for each model slot (same resolution, int8 settings included)."""
    pack = registry.resolve_face_pack(settings.face_model, settings.model_dir)
    return {
        "detector": precision_path(pack.detector, settings.detector_precision, settings.model_dir),
        "nsfw": settings.nsfw_local_model_path or registry.nudenet_model_path(),
        "spoof": settings.spoof_local_model_path or registry.default_spoof_path(settings.model_dir),
        "embedder": precision_path(pack.embedder, settings.embedder_precision, settings.model_dir),
    }


def slot_session(models: ModelSet, name: str) -> ort.InferenceSession:
    """The ONNX Runtime session inside a loaded slot (the model objects keep it as `.session`)."""
    obj = models.require(name)  # a slot that failed to load stops the benchmark with its reason
    for holder in (obj, getattr(obj, "model", None)):
        if holder is not None and isinstance(getattr(holder, "session", None), ort.InferenceSession):
            return holder.session
    raise RuntimeError(f"the {name} slot holds no ONNX session ({type(obj).__name__}): not an ONNX model")


def nominal_shapes(settings: MLSettings, sessions: dict[str, ort.InferenceSession]) -> dict[str, tuple[int, ...]]:
    """(C, H, W) each model runs at in /v1/analyze: the detector at the coarse size, NSFW at 320."""
    coarse = settings.face_detection_coarse_size or max(settings.detection_size)
    shapes = {"detector": (3, coarse, coarse), "nsfw": (3, 320, 320)}
    for name in ("spoof", "embedder"):
        shapes[name] = tuple(int(d) for d in sessions[name].get_inputs()[0].shape[1:])
    return shapes


def random_input(name: str, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    low, high = INPUT_RANGE[name]
    return np.random.default_rng(seed).uniform(low, high, size=tuple(shape)).astype(np.float32)


@cache
def flops_at(path: str, shape: tuple[int, ...]) -> int:
    return count_flops(Path(path), shape).total


def faces_dir() -> Path | None:
    """The test photos under $FACEAUTH_SHARED_DIR, if it is set and has them."""
    shared = os.environ.get("FACEAUTH_SHARED_DIR")
    path = shared_faces_dir(Path(shared)) if shared else None
    return path if path is not None and path.is_dir() else None


# -- the ceiling ---------------------------------------------------------------------------------------------


class _Recorder:
    """Stands in for a session and notes the input shape of every run (to count what the pipeline ran)."""

    def __init__(self, session: ort.InferenceSession, log: list[tuple[int, ...]]) -> None:
        self._session, self._log = session, log

    def run(self, output_names, feeds, *args, **kwargs):
        self._log.append(tuple(next(iter(feeds.values())).shape))
        return self._session.run(output_names, feeds, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@contextmanager
def recording(models: ModelSet) -> Any:
    """Every model run of the block, as {model: [input shape, ...]}; the sessions are restored after."""
    log: dict[str, list[tuple[int, ...]]] = {name: [] for name in MODELS}
    swapped = []
    for name in MODELS:
        obj = models.require(name)
        for holder in (obj, getattr(obj, "model", None)):
            if holder is not None and isinstance(getattr(holder, "session", None), ort.InferenceSession):
                swapped.append((holder, holder.session))
                holder.session = _Recorder(holder.session, log[name])
                break
    try:
        yield log
    finally:
        for holder, session in swapped:
            holder.session = session


def photo_flops(models: ModelSet, settings: MLSettings, paths: dict[str, Path], photos: Sequence[Path]) -> dict:
    """Mean FLOPs per photo of each model over the test photos, counting the runs /v1/analyze really makes."""
    from faceauth.inference.pipeline import ALL_CHECKS, Pipeline

    pipeline = Pipeline(models, settings)
    per_model = {name: [] for name in MODELS}
    detector_runs = []
    for photo in photos:
        with recording(models) as log:
            pipeline.analyze(photo.read_bytes(), ALL_CHECKS)
        for name in MODELS:
            per_model[name].append(sum(flops_at(str(paths[name]), shape) for shape in log[name]))
        detector_runs.append(sum(shape[0] for shape in log["detector"]))
    return {
        "photos": len(photos),
        "flops_per_image": {name: float(np.mean(v)) for name, v in per_model.items()},
        "detector_runs_per_image": float(np.mean(detector_runs)),
        "with_second_detector_pass": float(np.mean([r > 1 for r in detector_runs])),
        "with_face": float(np.mean([f > 0 for f in per_model["embedder"]])),
    }


def ceiling(
    *,
    threads: int | None = None,
    batch: int = 32,
    seconds: float = 3.0,
    settings: MLSettings | None = None,
    photos: Sequence[Path] | None = None,
    max_other: float = MAX_OTHER_CORES,
) -> dict:
    """The compute-bound ceiling of /v1/analyze on this machine, in images per second.

    Per model: FLOPs per image at the shape /v1/analyze runs it at, and FLOP/s in a large-batch run (`batch`
    images, `threads` intra-op threads, default all cores) of the session the service's loader opens. Then
    total FLOPs per image, aggregate FLOP/s (total FLOPs / total time per image) and `ceiling_img_per_s`
    (= aggregate FLOP/s / total FLOPs). `photos` (default: the test photos under FACEAUTH_SHARED_DIR) adds the
    same computed with the mean FLOPs the pipeline really runs per photo (`photos` key; None without photos).
    """
    threads = threads or cores()
    settings = settings or service_settings()
    settings = settings.model_copy(update={"intra_op_threads": threads})
    models = ModelSet.load(settings)
    paths = {name: Path(models.slots[name].path) for name in MODELS}
    sessions = {name: slot_session(models, name) for name in MODELS}
    shapes = nominal_shapes(settings, sessions)
    per_model: dict[str, dict] = {}
    for name in MODELS:
        session = sessions[name]
        feeds = {session.get_inputs()[0].name: random_input(name, (batch, *shapes[name]))}
        timing = least_disturbed(lambda s=session, f=feeds: time_runs(lambda: s.run(None, f), seconds), max_other)
        flops = flops_at(str(paths[name]), (1, *shapes[name]))
        seconds_per_image = timing["median_s"] / batch
        per_model[name] = {
            "file": paths[name].name,
            "model_id": models.slots[name].model_id,
            "input": list(shapes[name]),
            "flops_per_image": flops,
            "flops_per_s": flops / seconds_per_image,
            "ms_per_image": 1000 * seconds_per_image,
            "runs": timing["runs"],
            "other_cores": timing["other_cores"],
        }
        say(f"  {name}: {flops / 1e9:.3f} GFLOPs, {flops / seconds_per_image / 1e9:.1f} GFLOP/s")
    total_flops = sum(m["flops_per_image"] for m in per_model.values())
    total_s = sum(m["ms_per_image"] for m in per_model.values()) / 1000
    parallel = least_disturbed(lambda: parallel_batch1(settings, shapes, callers=threads, seconds=seconds), max_other)
    parallel["flops_per_s"] = parallel["img_per_s"] * total_flops
    result = {
        "machine": machine(),
        "threads": threads,
        "batch": batch,
        "models": per_model,
        "total_flops_per_image": total_flops,
        "aggregate_flops_per_s": total_flops / total_s,
        "ceiling_img_per_s": 1 / total_s,
        # Not part of the ceiling's definition: the four models at batch 1, one caller per core with one
        # intra-op thread each (the service's layout). These small nets run faster that way than in a large batch,
        # whose activations no longer fit in the caches.
        "batch1_parallel": parallel,
        "photos": None,
    }
    if photos is None and (directory := faces_dir()) is not None:
        photos = sorted(directory.glob("*.jpg"))
    if photos:
        mean = photo_flops(models, settings, paths, photos)
        # Other detector shapes are assumed to run at the FLOP/s measured at the coarse size.
        photo_s = sum(mean["flops_per_image"][n] / per_model[n]["flops_per_s"] for n in MODELS)
        mean["total_flops_per_image"] = sum(mean["flops_per_image"].values())
        mean["ceiling_img_per_s"] = 1 / photo_s
        result["photos"] = mean
    return result


def parallel_batch1(settings: MLSettings, shapes: dict[str, tuple[int, ...]], *, callers: int, seconds: float) -> dict:
    """Images/s of `callers` threads each running the four models in turn at batch 1, sharing the sessions the
    service's loader opens with one intra-op thread (what its workers do, minus decoding and cropping)."""
    models = ModelSet.load(settings.model_copy(update={"intra_op_threads": 1}))
    sessions = {name: slot_session(models, name) for name in MODELS}
    feeds = {n: {sessions[n].get_inputs()[0].name: random_input(n, (1, *shapes[n]))} for n in MODELS}

    def image() -> None:
        for n in MODELS:
            sessions[n].run(None, feeds[n])

    image()
    done, meter = run_callers(callers, lambda k: image(), seconds)
    return {"callers": callers, "img_per_s": done / meter.wall, "other_cores": meter.other_cores}


def run_callers(callers: int, work: Callable[[int], object], seconds: float) -> tuple[int, Meter]:
    """`callers` threads, caller k calling `work(k)` over and over for `seconds`: the calls done, and the meter."""
    done = [0] * callers
    stop = threading.Event()

    def caller(k: int) -> None:
        while not stop.is_set():
            work(k)
            done[k] += 1

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(callers)]
    with Meter() as meter:
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
    return sum(done), meter


def ratio(measured_img_per_s: float, result: dict) -> float:
    """Measured /v1/analyze images per second as a share of the ceiling."""
    return measured_img_per_s / result["ceiling_img_per_s"]


def ceiling_table(result: dict, measured: float | None = None) -> str:
    rows = [
        "| model | input | GFLOPs / image | GFLOP/s (batch {b}, {t} threads) | ms / image | other cores |".format(
            b=result["batch"], t=result["threads"]
        ),
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, m in result["models"].items():
        shape = "x".join(str(d) for d in m["input"][1:])
        rows.append(
            f"| {name} ({m['file']}) | {shape} | {m['flops_per_image'] / 1e9:.3f} | {m['flops_per_s'] / 1e9:.1f} "
            f"| {m['ms_per_image']:.2f} | {_fmt(m['other_cores'])} |"
        )
    total_ms = 1000 / result["ceiling_img_per_s"]
    rows.append(
        f"| **all four** | | **{result['total_flops_per_image'] / 1e9:.3f}** "
        f"| **{result['aggregate_flops_per_s'] / 1e9:.1f}** | **{total_ms:.2f}** | |"
    )
    lines = [*rows, "", f"Ceiling: **{result['ceiling_img_per_s']:.1f} images/s** (nominal shapes)."]
    par = result.get("batch1_parallel")
    if par:
        lines.append(
            f"For comparison, not the ceiling's definition: the same four models at batch 1, {par['callers']} callers "
            f"x 1 intra-op thread (the service's layout): {par['img_per_s']:.1f} images/s = "
            f"{par['flops_per_s'] / 1e9:.1f} GFLOP/s (other cores {_fmt(par['other_cores'])})."
        )
    photos = result.get("photos")
    if photos:
        lines.append(
            f"Over the {photos['photos']} test photos as /v1/analyze runs them: "
            f"{photos['total_flops_per_image'] / 1e9:.3f} GFLOPs per photo (detector "
            f"{photos['flops_per_image']['detector'] / 1e9:.3f}, {photos['detector_runs_per_image']:.2f} runs; "
            f"{100 * photos['with_second_detector_pass']:.0f} % need the full-size pass; "
            f"{100 * photos['with_face']:.0f} % have a face for spoof/embed): "
            f"ceiling **{photos['ceiling_img_per_s']:.1f} images/s**."
        )
    if measured is not None:
        lines.append(
            f"Measured /v1/analyze at concurrency 8: {measured:.1f} images/s = "
            f"**{100 * ratio(measured, result):.0f} %** of the ceiling"
            + (f" ({100 * measured / photos['ceiling_img_per_s']:.0f} % of the photo-mean ceiling)." if photos else ".")
        )
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# -- the tuning grid -----------------------------------------------------------------------------------------

DEFAULT_CONFIG: dict[str, Any] = {
    "level": "all",
    "threads": 1,
    "callers": 2,
    "own_sessions": False,
    "spinning": False,
    "arena": True,
    "mem_pattern": True,
    "rewrite": True,
}
# One thing changed at a time from the default (label, changes).
GRID: list[tuple[str, dict[str, Any]]] = [
    ("default: all, 1 thread x 2 callers, rewrite", {}),
    ("PRelu rewrite off (the previous default)", {"rewrite": False}),
    ("optimisation: disabled", {"level": "disable"}),
    ("optimisation: basic", {"level": "basic"}),
    ("optimisation: extended", {"level": "extended"}),
    ("1 thread x 2 callers, a session each", {"own_sessions": True}),
    ("1 thread x 2 callers, a session each, arena off", {"own_sessions": True, "arena": False}),
    ("2 threads x 1 caller", {"threads": 2, "callers": 1}),
    ("2 threads x 1 caller, spinning", {"threads": 2, "callers": 1, "spinning": True}),
    ("2 threads x 2 callers", {"threads": 2}),
    ("2 threads x 2 callers, spinning", {"threads": 2, "spinning": True}),
    ("memory arena off", {"arena": False}),
    ("memory pattern off", {"mem_pattern": False}),
    ("arena and pattern off", {"arena": False, "mem_pattern": False}),
]
LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(cfg: dict[str, Any]) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = LEVELS[cfg["level"]]
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = cfg["threads"]
    opts.inter_op_num_threads = 1
    spin = "1" if cfg["spinning"] else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    opts.enable_cpu_mem_arena = cfg["arena"]
    opts.enable_mem_pattern = cfg["mem_pattern"]
    return opts


def grid_worker(cfg: dict[str, Any], seconds: float, max_other: float = MAX_OTHER_CORES) -> dict:
    """One configuration, in this (fresh) process: images/s at batch 1 and 8, peak RSS over the baseline."""
    settings = service_settings()
    paths = model_paths(settings)
    coarse = settings.face_detection_coarse_size or max(settings.detection_size)
    shapes = {"detector": (3, coarse, coarse), "nsfw": (3, 320, 320), "spoof": (3, 80, 80), "embedder": (3, 112, 112)}
    feeds = {b: {n: random_input(n, (b, *shapes[n])) for n in MODELS} for b in (1, 8)}
    models = {n: (rewrite.cpu_model(p) if cfg["rewrite"] else None) or str(p) for n, p in paths.items()}
    baseline_mib = own_mib("VmRSS")

    def open_sessions() -> dict[str, ort.InferenceSession]:
        return {
            n: ort.InferenceSession(models[n], session_options(cfg), providers=["CPUExecutionProvider"]) for n in MODELS
        }

    shared = open_sessions()
    per_caller = [open_sessions() if cfg["own_sessions"] else shared for _ in range(cfg["callers"])]
    names = {n: shared[n].get_inputs()[0].name for n in MODELS}
    result: dict[str, Any] = {"config": cfg}
    for batch in (1, 8):

        def image(sessions: dict[str, ort.InferenceSession], b: int = batch) -> None:
            for n in MODELS:
                sessions[n].run(None, {names[n]: feeds[b][n]})

        for sessions in per_caller:
            image(sessions)  # warm-up (first runs allocate)

        def measure(b: int = batch) -> dict:
            done, meter = run_callers(len(per_caller), lambda k: image(per_caller[k]), seconds)
            return {"img_per_s": done * b / meter.wall, "other_cores": meter.other_cores}

        result[f"batch{batch}"] = least_disturbed(measure, max_other)
    result["peak_rss_delta_mib"] = own_mib("VmHWM") - baseline_mib
    return result


def grid(
    seconds: float = 4.0,
    rounds: int = 3,
    configs: Sequence[tuple[str, dict]] = GRID,
    max_other: float = MAX_OTHER_CORES,
) -> list[dict]:
    """Every configuration `rounds` times (interleaved, each in a fresh process); per configuration the median
    round's figures."""
    runs: dict[str, list[dict]] = {label: [] for label, _ in configs}
    for r in range(rounds):
        for label, changes in configs:
            cfg = {**DEFAULT_CONFIG, **changes}
            command = [sys.executable, "-m", "bench.ort", "_grid-worker", json.dumps(cfg)]
            out = subprocess.run(
                [*command, "--seconds", str(seconds), "--max-other", str(max_other)],
                capture_output=True,
                text=True,
                check=True,
            )
            runs[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
            b1 = runs[label][-1]["batch1"]
            say(f"  round {r + 1} {label}: {b1['img_per_s']:.1f} img/s (other {_fmt(b1['other_cores'])})")
    rows = []
    for label, results in runs.items():

        def median_of(key: str, rs: list[dict] = results) -> dict:
            ordered = sorted(rs, key=lambda run: run[key]["img_per_s"])
            return ordered[len(ordered) // 2][key]

        rows.append(
            {
                "label": label,
                "config": results[0]["config"],
                "batch1": median_of("batch1"),
                "batch8": median_of("batch8"),
                "batch1_rounds": [x["batch1"]["img_per_s"] for x in results],
                "batch8_rounds": [x["batch8"]["img_per_s"] for x in results],
                "peak_rss_delta_mib": float(np.median([x["peak_rss_delta_mib"] for x in results])),
            }
        )
    return rows


def grid_table(rows: list[dict]) -> str:
    base = rows[0]
    lines = [
        "| configuration | img/s batch 1 | vs default | img/s batch 8 | vs default | peak RSS Δ MiB | other cores |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        b1, b8 = row["batch1"]["img_per_s"], row["batch8"]["img_per_s"]
        other = max((row[k]["other_cores"] or 0.0) for k in ("batch1", "batch8"))
        lines.append(
            f"| {row['label']} | {b1:.1f} | {100 * (b1 / base['batch1']['img_per_s'] - 1):+.0f} % | {b8:.1f} "
            f"| {100 * (b8 / base['batch8']['img_per_s'] - 1):+.0f} % | {row['peak_rss_delta_mib']:.0f} | {other:.2f} |"
        )
    return "\n".join(lines)


# -- int8 ----------------------------------------------------------------------------------------------------


def pair_metrics(vectors: dict[str, np.ndarray], pairs: list[Pair], threshold: float) -> dict:
    same = np.array([vectors[p.left] @ vectors[p.right] for p in pairs if p.same])
    diff = np.array([vectors[p.left] @ vectors[p.right] for p in pairs if not p.same])
    # EER: the threshold where false non-matches and false matches are closest to equal (their mean there).
    candidates = np.unique(np.concatenate([same, diff, [threshold]]))
    fnmr = np.array([(same < t).mean() for t in candidates])
    fmr = np.array([(diff >= t).mean() for t in candidates])
    k = int(np.argmin(np.abs(fnmr - fmr) + 1e-9 * np.maximum(fnmr, fmr)))
    return {
        "same_min": float(same.min()),
        "same_mean": float(same.mean()),
        "diff_max": float(diff.max()),
        "diff_mean": float(diff.mean()),
        "eer": float((fnmr[k] + fmr[k]) / 2),
        "fnmr_at_threshold": float((same < threshold).mean()),
        "fmr_at_threshold": float((diff >= threshold).mean()),
    }


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def detection_agreement(fp32, int8, photos: dict[str, np.ndarray], sizes: Sequence[int]) -> dict:
    """Each fp32 face matched to the int8 face of highest box IoU: IoU, and the largest of the 5 landmark
    shifts in detector-input px and as a share of the fp32 face's eye distance."""
    ious, shifts_px, shifts_rel, missed, extra, faces = [], [], [], 0, 0, 0
    for rgb in photos.values():
        for size in sizes:
            scale = fp32.input_scale(rgb, (size, size))
            a_faces, b_faces = fp32.detect(rgb, (size, size)), int8.detect(rgb, (size, size))
            faces += len(a_faces)
            for a in a_faces:
                best = max(b_faces, key=lambda b, a=a: _iou(a.box, b.box), default=None)
                if best is None or _iou(a.box, best.box) < 0.5:
                    missed += 1
                    continue
                shift = float(np.linalg.norm(a.landmarks - best.landmarks, axis=1).max())
                eyes = float(np.linalg.norm(a.landmarks[0] - a.landmarks[1]))
                ious.append(_iou(a.box, best.box))
                shifts_px.append(shift * scale)
                shifts_rel.append(shift / max(eyes, 1e-6))
            extra += max(0, len(b_faces) - len(a_faces))
    return {
        "faces": faces,
        "missed": missed,
        "extra": extra,
        "iou_min": float(np.min(ious)),
        "iou_mean": float(np.mean(ious)),
        "landmark_shift_px_mean": float(np.mean(shifts_px)),
        "landmark_shift_px_max": float(np.max(shifts_px)),
        "landmark_shift_eye_pct_mean": 100 * float(np.mean(shifts_rel)),
        "landmark_shift_eye_pct_max": 100 * float(np.max(shifts_rel)),
    }


def int8_report(*, seconds: float = 2.0, max_other: float = MAX_OTHER_CORES) -> dict:
    """Quantize on the photos no labelled pair uses; evaluate on the ones the pairs use."""
    from faceauth.inference.alignment import align_face
    from faceauth.inference.pipeline import Pipeline
    from faceauth.inference.runtime import create_session
    from faceauth.inference.tools.quantize import quantize_pack, read_rgb

    directory = faces_dir()
    if directory is None:
        raise SystemExit("set FACEAUTH_SHARED_DIR (its faces/deepface holds the photos and master.csv)")
    pairs = read_pairs(directory / "master.csv")
    evaluation = sorted({p.left for p in pairs} | {p.right for p in pairs})
    calibration = sorted(p for p in directory.glob("*.jpg") if p.name not in evaluation)
    out: dict[str, Any] = {
        "machine": machine(),
        "calibration_photos": [p.name for p in calibration],
        "evaluation_photos": evaluation,
        "threshold": DEFAULT_MATCH_THRESHOLD,
    }
    with tempfile.TemporaryDirectory(prefix="faceauth-int8-") as tmp:
        base = service_settings(model_dir=Path(tmp), intra_op_threads=1)
        t0 = time.perf_counter()
        written = quantize_pack(base, calibration)
        out["quantize_seconds"] = time.perf_counter() - t0
        out["files"] = {k: {"name": p.name, "bytes": p.stat().st_size} for k, p in written.items()}
        sets = {
            "fp32": ModelSet.load(base),
            "int8 embedder": ModelSet.load(base.model_copy(update={"embedder_precision": "int8"})),
            "int8 both": ModelSet.load(
                base.model_copy(update={"embedder_precision": "int8", "detector_precision": "int8"})
            ),
        }
        for models in sets.values():
            bad = {n: s.error for n, s in models.slots.items() if s.state != "ready"}
            if bad:
                raise SystemExit(f"models did not load: {bad}")
        out["model_ids"] = {k: m.slots["embedder"].model_id for k, m in sets.items()}
        photos = {name: read_rgb(directory / name) for name in evaluation}

        # The embedder alone: the same aligned crops (fp32 landmarks) through fp32 and int8.
        fp32_det = sets["fp32"].require("detector")
        crops = {n: align_face(rgb, fp32_det.detect(rgb)[0].landmarks) for n, rgb in photos.items()}
        vec = {
            k: {n: sets[k].require("embedder").embed_aligned([c])[0] for n, c in crops.items()}
            for k in ("fp32", "int8 embedder")
        }
        cos = np.array([vec["fp32"][n] @ vec["int8 embedder"][n] for n in evaluation])
        out["embedding_cosine_fp32_int8"] = {"min": float(cos.min()), "mean": float(cos.mean())}
        out["pairs_same_crops"] = {k: pair_metrics(v, pairs, DEFAULT_MATCH_THRESHOLD) for k, v in vec.items()}

        # End to end through the pipeline (/v1/analyze's detection, alignment and embedding).
        end_to_end = {}
        for k, models in sets.items():
            pipeline = Pipeline(models, base)
            end_to_end[k] = {
                n: pipeline.analyze((directory / n).read_bytes(), frozenset({"embed"})).embedding for n in evaluation
            }
        out["pairs_pipeline"] = {k: pair_metrics(v, pairs, DEFAULT_MATCH_THRESHOLD) for k, v in end_to_end.items()}

        sizes = sorted({base.face_detection_coarse_size, *base.detection_size} - {0})
        out["detection"] = detection_agreement(fp32_det, sets["int8 both"].require("detector"), photos, sizes)
        out["detection"]["sizes"] = sizes

        # Speed of each file, 1 intra-op thread (as the service runs), batch 1 and 32.
        shapes = {"detector": (3, sizes[0], sizes[0]), "embedder": (3, 112, 112)}
        speed: dict[str, dict] = {}
        for kind, shape in shapes.items():
            for precision in ("fp32", "int8"):
                path = model_paths(base.model_copy(update={f"{kind}_precision": precision}))[kind]
                session = create_session(path, intra_op_threads=1)
                row = {}
                for batch in (1, 32):
                    feeds = {session.get_inputs()[0].name: random_input(kind, (batch, *shape))}
                    timing = least_disturbed(
                        lambda s=session, f=feeds: time_runs(lambda: s.run(None, f), seconds), max_other
                    )
                    row[f"batch{batch}_ms_per_image"] = 1000 * timing["median_s"] / batch
                    row[f"batch{batch}_other_cores"] = timing["other_cores"]
                speed[f"{kind} {precision}"] = row
        out["speed"] = speed
    return out


def int8_tables(r: dict) -> str:
    lines = [
        f"Calibration: {len(r['calibration_photos'])} photos that no labelled pair uses; evaluation: the "
        f"{len(r['evaluation_photos'])} photos of the 300 pairs. Quantizing both models took "
        f"{r['quantize_seconds']:.0f} s.",
        "",
        f"Embedding agreement, same aligned crops: cosine(fp32, int8) min {r['embedding_cosine_fp32_int8']['min']:.4f}"
        f", mean {r['embedding_cosine_fp32_int8']['mean']:.4f}.",
        "",
        f"| embedder (pairs) | same-person min | same-person mean | different max | EER | FNMR @ {r['threshold']} "
        f"| FMR @ {r['threshold']} |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for title, block in (("same crops", r["pairs_same_crops"]), ("pipeline", r["pairs_pipeline"])):
        for k, m in block.items():
            lines.append(
                f"| {k}, {title} | {m['same_min']:.3f} | {m['same_mean']:.3f} | {m['diff_max']:.3f} "
                f"| {100 * m['eer']:.1f} % | {100 * m['fnmr_at_threshold']:.1f} % "
                f"| {100 * m['fmr_at_threshold']:.1f} % |"
            )
    d = r["detection"]
    lines += [
        "",
        f"Detector int8 vs fp32 at {'/'.join(str(s) for s in d['sizes'])} px on the evaluation photos: "
        f"{d['faces']} faces, {d['missed']} missed, {d['extra']} extra; box IoU min {d['iou_min']:.3f} "
        f"mean {d['iou_mean']:.3f}; largest landmark shift mean {d['landmark_shift_px_mean']:.2f} / max "
        f"{d['landmark_shift_px_max']:.2f} detector-input px = {d['landmark_shift_eye_pct_mean']:.1f} % / "
        f"{d['landmark_shift_eye_pct_max']:.1f} % of the eye distance.",
        "",
        "| model | ms / image batch 1 | ms / image batch 32 | other cores |",
        "|---|---:|---:|---:|",
    ]
    for k, s in r["speed"].items():
        other = max(s["batch1_other_cores"] or 0.0, s["batch32_other_cores"] or 0.0)
        lines.append(f"| {k} | {s['batch1_ms_per_image']:.2f} | {s['batch32_ms_per_image']:.2f} | {other:.2f} |")
    return "\n".join(lines)


# -- the service, with and without the rewrite --------------------------------------------------------------

_AS_EXPORTED = "import faceauth.inference.rewrite as r; r.cpu_model = lambda path: None; "


def service_ab(*, rounds: int = 3, requests: int = 192, concurrency: int = 8) -> dict:
    """/v1/analyze of `faceauth ml` at `concurrency`, with the PRelu rewrite and with the models as exported,
    in alternating rounds (each a fresh service); every photo as a multipart upload built before timing."""
    import httpx

    from bench.loadgen import multipart_payload, run_level
    from bench.servers.process import HOST, ServiceProcess, free_port
    from bench.servers.services import TOKEN, ml_env, spoof_model_env

    directory = faces_dir()
    if directory is None:
        raise SystemExit("set FACEAUTH_SHARED_DIR (the photos are its faces/deepface)")
    photos = sorted(directory.glob("*.jpg"))
    payloads = [multipart_payload({"file": (p.name, p.read_bytes(), "image/jpeg")}, name=p.name) for p in photos]
    # The anti-spoof model lives beside the photos.
    env = ml_env({"ML_SERVICE_AUTO_FETCH": "false", **spoof_model_env(directory.parents[1])})

    async def one(variant: str) -> dict:
        port = free_port()
        cli = f"from faceauth.cli import main; main(['--log-level', 'warning', 'ml', '--port', '{port}'])"
        code = (_AS_EXPORTED if variant == "as exported" else "") + cli
        url = f"http://{HOST}:{port}"
        with ServiceProcess([sys.executable, "-c", code], url, name=f"faceauth ml ({variant})", env=env) as server:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
                await wait_for_quiet(timeout_s=30)
                r = await run_level(
                    client,
                    f"{url}/v1/analyze",
                    payloads,
                    concurrency=concurrency,
                    requests=requests,
                    warmup=16,
                    server=server,
                    max_seconds=600,
                )
        own = (r.server_cpu_s or 0.0) + (r.client_cpu_s or 0.0)
        other = None if r.machine_cpu_s is None else max(0.0, (r.machine_cpu_s - own) / r.duration_s)
        return {"img_per_s": r.throughput, "errors": sum(r.errors.values()), "other_cores": other}

    runs: dict[str, list[dict]] = {"rewrite": [], "as exported": []}
    for k in range(rounds):
        for variant in runs:
            runs[variant].append(asyncio.run(one(variant)))
            say(f"  round {k + 1} {variant}: {runs[variant][-1]['img_per_s']:.1f} img/s")
    return {
        "machine": machine(),
        "concurrency": concurrency,
        "requests": requests,
        "runs": runs,
        "median_img_per_s": {v: float(np.median([x["img_per_s"] for x in xs])) for v, xs in runs.items()},
    }


def service_table(r: dict) -> str:
    lines = [
        f"| models | /v1/analyze img/s at concurrency {r['concurrency']} (median) | rounds | errors | other cores |",
        "|---|---:|---|---:|---:|",
    ]
    for variant, xs in r["runs"].items():
        rounds = ", ".join(f"{x['img_per_s']:.1f}" for x in xs)
        other = max((x["other_cores"] or 0.0) for x in xs)
        errors = sum(x["errors"] for x in xs)
        lines.append(f"| {variant} | {r['median_img_per_s'][variant]:.1f} | {rounds} | {errors} | {other:.2f} |")
    return "\n".join(lines)


# -- command line --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ort", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ceiling", help="FLOPs per image, large-batch FLOP/s per model, the ceiling")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=3.0, help="per model")
    p.add_argument("--measured", type=float, default=None, help="measured /v1/analyze img/s: print the ratio")
    p.add_argument("--no-rewrite", action="store_true", help="models as exported, without the PRelu rewrite")
    p = sub.add_parser("grid", help="session options x thread layouts, each in a fresh process")
    p.add_argument("--seconds", type=float, default=4.0, help="per configuration and batch size")
    p.add_argument("--rounds", type=int, default=3)
    p = sub.add_parser("int8", help="int8 embedder and detector: accuracy on the labelled pairs, speed")
    p.add_argument("--seconds", type=float, default=2.0)
    p = sub.add_parser("service", help="/v1/analyze at concurrency 8 with and without the PRelu rewrite")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=192)
    p = sub.add_parser("_grid-worker")
    p.add_argument("config")
    p.add_argument("--seconds", type=float, default=4.0)
    for name in ("ceiling", "grid", "int8", "_grid-worker"):
        sub.choices[name].add_argument(
            "--max-other", type=float, default=MAX_OTHER_CORES, help="repeat a measurement disturbed by more cores"
        )
    for name in ("ceiling", "grid", "int8", "service"):
        sub.choices[name].add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)

    if args.command == "_grid-worker":
        print(json.dumps(grid_worker(json.loads(args.config), args.seconds, args.max_other)))
        return 0
    say(f"onnxruntime {ort.__version__}, {cpu_name()}, {cores()} cores, load {os.getloadavg()}")
    if args.command == "ceiling":
        if args.no_rewrite:  # what the service ran before the rewrite, for comparison
            rewrite.cpu_model = lambda path: None
        result: Any = ceiling(threads=args.threads, batch=args.batch, seconds=args.seconds, max_other=args.max_other)
        if args.measured is not None:
            result["measured_img_per_s"] = args.measured
            result["ratio"] = ratio(args.measured, result)
        print(ceiling_table(result, args.measured))
    elif args.command == "grid":
        rows = grid(seconds=args.seconds, rounds=args.rounds, max_other=args.max_other)
        result = {"machine": machine(), "seconds": args.seconds, "rounds": args.rounds, "rows": rows}
        print(grid_table(rows))
    elif args.command == "service":
        result = service_ab(rounds=args.rounds, requests=args.requests)
        print(service_table(result))
    else:
        result = int8_report(seconds=args.seconds, max_other=args.max_other)
        print(int8_tables(result))
    say(f"load after: {os.getloadavg()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
