"""`faceauth import` as a user runs it (a process, against a real Face API and ML service): a folder of photos is
enrolled, each refused photo is in the report with its code, and a second run enrols nothing twice."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

from faceauth.sdk import FaceAuthClient


def _import(running_api, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACEAUTH_URL": running_api.url, "FACEAUTH_API_KEY": running_api.acme_key}
    return subprocess.run(
        [sys.executable, "-m", "faceauth", "import", *args, "--quiet"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _blank_jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (320, 320), (128, 128, 128)).save(out, "JPEG")
    return out.getvalue()


def _report(path: Path) -> dict[str, tuple[str, str]]:
    with path.open(newline="") as f:
        return {row["face_id"]: (row["code"], row["failed_checks"]) for row in csv.DictReader(f)}


def test_a_folder_is_enrolled_refusals_reported_and_a_rerun_enrols_nothing_twice(
    running_api, people, faces_dir, photos, tmp_path
):
    org = tmp_path / "org"
    for i, person in enumerate(people[:3]):
        (org / f"person{i}").mkdir(parents=True)
        for photo in person.photos[:2]:
            (org / f"person{i}" / photo).write_bytes(photos(photo))
    (org / "mallory").mkdir()
    (org / "mallory" / "print.jpg").write_bytes(photos.antispoof("spoof_print_1.jpg"))
    (org / "mallory" / "wall.jpg").write_bytes(_blank_jpeg())
    (org / "mallory" / "notes.jpg").write_text("not a photo")
    (org / "x y.jpg").write_bytes(photos(people[3].enrol_photo))  # flat file: its stem (made an id) is the face

    dry = _import(running_api, str(org), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would enrol") == 10
    with FaceAuthClient(running_api.url, running_api.acme_key) as client:
        assert not any(s.subject_id.startswith("person") for s in client.subjects.list())  # the dry run wrote nothing

    first = _import(running_api, str(org), "--concurrency", "3", "--report", "first.csv", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "7 enrolled, 0 already enrolled, 3 refused" in first.stderr
    assert _report(tmp_path / "first.csv") == {
        "mallory.print": ("quality_check_failed", "spoof"),
        "mallory.wall": ("no_face_detected", "no_face"),
        "mallory.notes": ("invalid_image", ""),
    }
    with FaceAuthClient(running_api.url, running_api.acme_key) as client:
        enrolled = {f.face_id: s.subject_id for s in client.subjects.list() for f in s.faces}
    expected = {
        f"person{i}.{Path(p).stem}": f"person{i}" for i, person in enumerate(people[:3]) for p in person.photos[:2]
    }
    assert {k: v for k, v in enrolled.items() if k in expected or k == "x_y"} == {**expected, "x_y": "x_y"}

    again = _import(running_api, str(org), "--batch", "4", "--report", "again.csv", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 enrolled, 7 already enrolled, 3 refused" in again.stderr
    assert set(_report(tmp_path / "again.csv")) == {"mallory.print", "mallory.wall", "mallory.notes"}
    with FaceAuthClient(running_api.url, running_api.acme_key) as client:
        assert {f.face_id for s in client.subjects.list() for f in s.faces} == set(enrolled)


def test_a_csv_names_subjects_and_faces_and_bad_rows_are_refused_before_sending(running_api, people, photos, tmp_path):
    (tmp_path / "a.jpg").write_bytes(photos(people[0].enrol_photo))
    (tmp_path / "list.csv").write_text(
        "subject_id,face_id,path_or_url\n"
        "csv_anna,csv_anna_1,a.jpg\ncsv_bad,bad id,a.jpg\ncsv_gone,csv_gone_1,gone.jpg\n"
    )
    done = _import(running_api, str(tmp_path / "list.csv"), "--report", "r.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _report(tmp_path / "r.csv") == {"bad id": ("invalid_id", ""), "csv_gone_1": ("file_not_found", "")}
    with FaceAuthClient(running_api.url, running_api.acme_key) as client:
        assert client.get("csv_anna_1").subject_id == "csv_anna"
