"""The labelled test photos: ``faces/deepface`` of the shared test data folder and its pairs (``master.csv``).

* ``read_pairs`` -- the labelled pairs of a ``file_x,file_y,Decision`` CSV (Yes = the same person);
* ``identity_groups`` / ``people_from_pairs`` -- photos joined into people by the same-person pairs (union-find);
* ``photo_paths`` -- every photo of the folder;
* ``accepted_by_ml`` -- the photos a running ML service accepts for enrolment (one face, every check passed).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx


def faces_dir(shared_dir: Path) -> Path:
    return shared_dir / "faces" / "deepface"


def photo_paths(shared_dir: Path) -> list[Path]:
    photos = sorted(faces_dir(shared_dir).glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos in {faces_dir(shared_dir)} (set FACEAUTH_SHARED_DIR)")
    return photos


# ------------------------------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class Pair:
    left: str
    right: str
    same: bool
    listed: bool = True  # False: not in the CSV (calibrate's --all-pairs adds such pairs)

    @property
    def key(self) -> tuple[str, str]:
        return (self.left, self.right) if self.left <= self.right else (self.right, self.left)


def read_pairs(csv_path: Path) -> list[Pair]:
    """The labelled pairs of a ``file_x,file_y,Decision`` CSV (header names in any case), in file order."""
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = {name.strip().lower(): name for name in reader.fieldnames or []}
        missing = [c for c in ("file_x", "file_y", "decision") if c not in columns]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {', '.join(missing)} (have {reader.fieldnames})")
        pairs = []
        for line, row in enumerate(reader, start=2):
            decision = (row[columns["decision"]] or "").strip().lower()
            if decision not in ("yes", "no"):
                raise ValueError(f"{csv_path}:{line}: Decision must be Yes or No, got {decision!r}")
            left, right = (row[columns[c]].strip() for c in ("file_x", "file_y"))
            if not left or not right:
                raise ValueError(f"{csv_path}:{line}: empty file name")
            pairs.append(Pair(left, right, decision == "yes"))
    return pairs


def identity_groups(pairs: Iterable[Pair]) -> dict[str, str]:
    """Photo -> a representative of its identity group: union-find over the same-person pairs (every photo of
    `pairs` is in a group, alone if no same-person pair names it)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for pair in pairs:
        a, b = find(pair.left), find(pair.right)
        if pair.same and a != b:
            parent[max(a, b)] = min(a, b)
    return {photo: find(photo) for photo in list(parent)}


def people_from_pairs(master_csv: Path) -> list[list[str]]:
    """The people of a labelled-pairs CSV: the photos of each (sorted), joined by its same-person pairs; a photo no
    same-person pair names is left out."""
    groups: dict[str, list[str]] = {}
    for photo, root in identity_groups(p for p in read_pairs(master_csv) if p.same).items():
        groups.setdefault(root, []).append(photo)
    return sorted(sorted(g) for g in groups.values())


# ------------------------------------------------------------------------------------------------- the ML service


def accepted_by_ml(ml_url: str, token: str, photos: Sequence[Path]) -> tuple[list[Path], dict[str, list[str]]]:
    """The photos a running ML service accepts for enrolment (its /v1/analyze: every check passed, one face), and
    why each of the others is not accepted (photo name -> reasons)."""
    accepted, refused = [], {}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    with httpx.Client(base_url=ml_url, headers=headers, timeout=120) as client:
        for path in photos:
            body = client.post("/v1/analyze", content=path.read_bytes()).json()
            if body.get("passed") and body.get("faces_count") == 1:
                accepted.append(path)
            else:
                refused[path.name] = list(body.get("reasons") or []) or [f"faces_count={body.get('faces_count')}"]
    return accepted, refused
