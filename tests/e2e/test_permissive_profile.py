"""`ML_SERVICE_MODEL_PROFILE=permissive faceauth up`: enrols, searches and verifies, and neither of its processes
ever opens a file of InsightFace, NudeNet (AGPL-3.0) or dlib's 68-point predictor (iBUG 300-W, non-commercial).

Every Python process the command starts (the Face API and its ML service child) runs a `sitecustomize` with an
audit hook (PEP 578) that records each file opened; the test fails if a forbidden one is among them.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import httpx
import pytest

from bench.photos import read_pairs
from bench.servers.process import free_port
from tests.e2e.test_platform import _enrol, _interrupt, _start_reading, _top_match, wait_until_ready

# Our own NudeNet adapter (faceauth/inference/models/nudenet.py, MIT) may load; the nudenet package may not.
FORBIDDEN = ("insightface", "/nudenet/", "320n.onnx", "w600k", "scrfd", "det_500m", "shape_predictor_68")

AUDIT_HOOK = textwrap.dedent(
    """
    import os, sys

    _log = os.environ["FACEAUTH_TEST_OPEN_LOG"]

    def _record(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            if path != _log and path.endswith((".onnx", ".dat", ".py", ".pth", ".tflite", ".so")):
                with open(_log, "a") as out:
                    out.write(path + "\\n")

    sys.addaudithook(_record)
    """
)


def _opened(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.slow
def test_permissive_up_enrols_searches_and_verifies_without_insightface_or_agpl_files(
    spoof_model_path, faces_dir, shared_dir, tmp_path
):
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(AUDIT_HOOK)
    open_log = tmp_path / "opened.txt"
    api_port, ml_port = free_port(), free_port()
    env = {
        "PYTHONPATH": os.pathsep.join([str(hook_dir), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "FACEAUTH_TEST_OPEN_LOG": str(open_log),
        "FACEAUTH_API_PORT": str(api_port),
        "FACEAUTH_API_HOST": "127.0.0.1",
        "FACEAUTH_AUTH_DISABLED": "true",
        "ML_SERVICE_PORT": str(ml_port),
        "ML_SERVICE_MODEL_PROFILE": "permissive",
        "ML_SERVICE_SPOOF_LOCAL_MODEL_PATH": str(spoof_model_path),
        "ML_SERVICE_AUTO_FETCH": "false",
    }
    for name in list(os.environ):
        if name.startswith(("FACEAUTH_", "ML_SERVICE_")) and name not in env and name != "FACEAUTH_SHARED_DIR":
            env[name] = ""  # the user's defaults, not this test run's
    env = {k: v for k, v in env.items() if v}
    pairs = read_pairs(faces_dir / "master.csv")
    same = next(p for p in pairs if p.same)
    # A photo labelled as another person than the enrolled one.
    other = next(
        (p.right if p.left in (same.left, same.right) else p.left)
        for p in pairs
        if not p.same and {p.left, p.right} & {same.left, same.right}
    )
    photo = lambda name: (faces_dir / name).read_bytes()  # noqa: E731
    url = f"http://127.0.0.1:{api_port}"
    up, lines = _start_reading(["up"], env, tmp_path)
    try:
        wait_until_ready(url, up, timeout_s=120)
        ready = httpx.get(f"http://127.0.0.1:{ml_port}/readyz").json()
        assert ready["profile"] == "permissive" and ready["embedding_dim"] == 128
        assert ready["models"]["nsfw"]["state"] == "off"
        for name in ("detector", "embedder", "spoof", "blur"):
            slot = ready["models"][name]
            assert slot["state"] == "ready", slot
            assert "non-commercial" not in slot["license"] and "AGPL" not in slot["license"], slot
            # The audit hook sees Python's opens; a network's own loader (C++) opens its file by the slot's path.
            assert not any(word in (slot["path"] or "").lower() for word in FORBIDDEN), slot
        with httpx.Client(base_url=url, timeout=60) as client:
            enrolled = _enrol(client, "acme", "emp_1", photo(same.left))
            assert enrolled.status_code == 200, enrolled.text
            assert _top_match(client, "acme", photo(same.right)) == "emp_1"
            assert _top_match(client, "acme", photo(other)) is None
            verdicts = {}
            for name in (same.right, other):
                r = client.post(
                    "/v1/faces/verify",
                    data={"tenant": "acme", "reference_id": "emp_1"},
                    files={"probes": ("p.jpg", photo(name))},
                )
                assert r.status_code == 200, r.text
                verdicts[name] = r.json()["matched"]
            assert verdicts == {same.right: True, other: False}
            spoof = client.post(
                "/v1/faces/insert",
                data={"id": "emp_2", "tenant": "acme"},
                files={"file": ("s.jpg", (shared_dir / "faces" / "antispoof" / "spoof_print_1.jpg").read_bytes())},
            )
            assert spoof.status_code == 422 and "spoof" in spoof.text, spoof.text
    finally:
        _interrupt(up)
    opened = _opened(open_log)
    assert any(p.endswith("dlib_face_recognition_resnet_model_v1.dat") for p in opened), opened[-20:]
    assert not [p for p in opened if any(word in p.lower() for word in FORBIDDEN)]
    banner = "".join(lines)
    assert "profile permissive" in banner and "CC0" in banner, banner[-3000:]
