"""`faceauth import`: enrol a whole organisation from a folder or a CSV, through the async SDK.

- A folder: ``DIR/<subject_id>/<photo>`` (face id ``<subject_id>.<photo stem>``), or flat files ``DIR/<id>.jpg``
  (the file's stem is the face and the subject id).
- A CSV: ``subject_id,face_id,path_or_url`` (a header row is optional; relative paths are read from the CSV's
  folder).

Resumable: the tenant's enrolled faces are listed first and skipped, and a face that exists by the time it is
sent (409 face_already_exists) counts as already enrolled. Every refused photo goes into the report (CSV) with
its code. Ctrl-C stops sending, lets the photos in flight finish, and says how far it got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from faceauth.cli.client import EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, add_connection_options
from faceauth.contracts.ids import is_valid_id

if TYPE_CHECKING:
    from faceauth.sdk import AsyncFaceAuthClient

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic"})
_NOT_ID_CHAR = re.compile(r"[^A-Za-z0-9._:@-]")
REPORT_FIELDS = ["source", "subject_id", "face_id", "status", "code", "failed_checks", "message"]


@dataclass(frozen=True)
class Item:
    subject_id: str
    face_id: str
    source: str  # a path or a URL


@dataclass
class Refusal:
    item: Item
    status: int | None
    code: str
    message: str
    failed_checks: tuple[str, ...] = ()  # for quality_check_failed: spoof, blur, nsfw ...


@dataclass
class Tally:
    total: int
    enrolled: int = 0
    already: int = 0
    refused: list[Refusal] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.enrolled + self.already + len(self.refused)


def _as_id(text: str) -> str:
    return _NOT_ID_CHAR.sub("_", text.strip())


def read_source(source: Path) -> Iterator[Item]:
    """The photos to enrol, in a stable order."""
    if source.is_file():
        yield from _read_csv(source)
        return
    if not source.is_dir():
        raise FileNotFoundError(f"no such folder or CSV file: {source}")
    for entry in sorted(source.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            subject = _as_id(entry.name)
            for photo in sorted(entry.iterdir()):
                if photo.is_file() and photo.suffix.lower() in PHOTO_SUFFIXES:
                    yield Item(subject, f"{subject}.{_as_id(photo.stem)}", str(photo))
        elif entry.suffix.lower() in PHOTO_SUFFIXES:
            face = _as_id(entry.stem)
            yield Item(face, face, str(entry))


def _read_csv(path: Path) -> Iterator[Item]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.reader(f)):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if n == 0 and [c.strip().lower() for c in row[:3]] == ["subject_id", "face_id", "path_or_url"]:
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{n + 1}: expected subject_id,face_id,path_or_url")
            subject, face, where = (c.strip() for c in row[:3])
            if "://" not in where and not Path(where).is_absolute():
                where = str(path.parent / where)
            yield Item(subject or face, face, where)


def _photo(item: Item):
    from faceauth.sdk import Url

    return Url(item.source) if "://" in item.source else Path(item.source)


def _local_problem(item: Item) -> Refusal | None:
    """What can be refused without asking the API: a bad id, a missing file."""
    for name, value in (("face_id", item.face_id), ("subject_id", item.subject_id)):
        if not is_valid_id(value):
            return Refusal(item, None, "invalid_id", f"{name} {value!r} is not a valid id")
    if "://" not in item.source and not Path(item.source).is_file():
        return Refusal(item, None, "file_not_found", f"no such file: {item.source}")
    return None


class Progress:
    """A progress bar with rate and ETA (tqdm) on a terminal; a line every few seconds otherwise."""

    def __init__(self, total: int, quiet: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="face", disable=quiet, dynamic_ncols=True, file=sys.stderr)

    def advance(self, tally: Tally) -> None:
        self.bar.set_postfix(enrolled=tally.enrolled, refused=len(tally.refused), refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


async def _enrol_all(
    client: AsyncFaceAuthClient, items: list[Item], tally: Tally, args: argparse.Namespace, stop: asyncio.Event
) -> None:
    from faceauth.sdk import ConflictError, FaceAuthError, UnavailableError

    progress = Progress(len(items), args.quiet)
    queue: asyncio.Queue[list[Item]] = asyncio.Queue()
    size = max(1, args.batch)
    for i in range(0, len(items), size):
        queue.put_nowait(items[i : i + size])
    fatal: list[FaceAuthError] = []

    def record(item: Item, exc: FaceAuthError | None) -> None:
        if exc is None:
            tally.enrolled += 1
        elif isinstance(exc, ConflictError) and exc.code == "face_already_exists":
            tally.already += 1
        else:
            checks = tuple(exc.details.get("failed_checks") or ())
            tally.refused.append(Refusal(item, exc.status, exc.code, exc.message, checks))
        progress.advance(tally)

    async def send(group: list[Item]) -> None:
        if size == 1:
            item = group[0]
            try:
                await client.insert(item.face_id, _photo(item), subject_id=item.subject_id, dedup=args.dedup)
                record(item, None)
            except FaceAuthError as exc:
                if isinstance(exc, UnavailableError) or exc.status in (401, 403):
                    fatal.append(exc)  # every other photo would fail the same way: stop
                    stop.set()
                    return
                record(item, exc)
            return
        try:
            answer = await client.batch_insert([(i.face_id, _photo(i), i.subject_id) for i in group], dedup=args.dedup)
        except FaceAuthError as exc:
            if isinstance(exc, UnavailableError) or exc.status in (401, 403):
                fatal.append(exc)
                stop.set()
                return
            for item in group:
                record(item, exc)
            return
        for item, result in zip(group, answer.results, strict=True):
            if result.status == 200:
                record(item, None)
            else:
                err = result.error
                code, message = (err.code, err.message) if err else ("error", "")
                details = (err.details if err else None) or {}
                if not details.get("failed_checks") and result.imageQualityAssessment is not None:
                    details = {**details, "failed_checks": list(result.imageQualityAssessment.reasons)}
                cls = ConflictError if code == "face_already_exists" else FaceAuthError
                record(item, cls(result.status, code, message, details=details))

    async def worker() -> None:
        while not stop.is_set():
            try:
                group = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await send(group)

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, args.concurrency))))
    finally:
        progress.close()
    if fatal:
        raise fatal[0]


async def _existing_faces(client: AsyncFaceAuthClient) -> set[str]:
    faces: set[str] = set()
    async for subject in client.subjects.list(page_size=500):
        faces.update(f.face_id for f in subject.faces)
    return faces


def _write_report(path: Path, refusals: list[Refusal]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(REPORT_FIELDS)
        for r in sorted(refusals, key=lambda r: r.item.source):
            status = "" if r.status is None else r.status
            checks = " ".join(r.failed_checks)
            writer.writerow([r.item.source, r.item.subject_id, r.item.face_id, status, r.code, checks, r.message])


async def run_import(args: argparse.Namespace) -> int:
    from faceauth.sdk import AsyncFaceAuthClient, FaceAuthError, UnavailableError

    try:
        items = list(read_source(Path(args.source)))
    except (OSError, ValueError) as exc:
        print(f"faceauth: {exc}", file=sys.stderr)
        return EXIT_USAGE
    seen: set[str] = set()
    local: list[Refusal] = []
    todo: list[Item] = []
    for item in items:
        problem = _local_problem(item)
        if problem is None and item.face_id in seen:
            problem = Refusal(item, None, "duplicate_id_in_import", f"face id {item.face_id} appears twice")
        seen.add(item.face_id)
        (local.append(problem) if problem else todo.append(item))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Ctrl-C: stop sending, let the photos in flight finish (not the main thread in tests, or Windows: no handler).
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    started = time.monotonic()
    tally = Tally(total=len(items), refused=local)
    try:
        async with AsyncFaceAuthClient(args.url, args.api_key, tenant=args.tenant) as client:
            existing = await _existing_faces(client)
            pending = [i for i in todo if i.face_id not in existing]
            tally.already = len(todo) - len(pending)
            print(
                f"{len(items)} photos: {tally.already} already enrolled, {len(local)} refused before sending, "
                f"{len(pending)} to enrol",
                file=sys.stderr,
            )
            if args.dry_run:
                for item in pending:
                    print(f"would enrol {item.face_id} (subject {item.subject_id}) from {item.source}")
            else:
                await _enrol_all(client, pending, tally, args, stop)
    except FaceAuthError as exc:
        print(f"faceauth: {exc.code}: {exc.message}", file=sys.stderr)
        _finish(args, tally, started, interrupted=False)
        return EXIT_UNAVAILABLE if isinstance(exc, UnavailableError) or exc.status is None else EXIT_REFUSED
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    _finish(args, tally, started, interrupted=stop.is_set())
    if stop.is_set():
        return 130
    return EXIT_OK


def _finish(args: argparse.Namespace, tally: Tally, started: float, *, interrupted: bool) -> None:
    seconds = time.monotonic() - started
    codes = Counter(r.code for r in tally.refused)
    if not args.dry_run:
        _write_report(Path(args.report), tally.refused)
    head = "stopped (Ctrl-C)" if interrupted else ("dry run" if args.dry_run else "done")
    rate = tally.enrolled / seconds if seconds > 0 else 0.0
    print(
        f"{head}: {tally.done} of {tally.total} photos handled in {seconds:.1f} s ({rate:.1f} faces/s): "
        f"{tally.enrolled} enrolled, {tally.already} already enrolled, {len(tally.refused)} refused",
        file=sys.stderr,
    )
    if codes:
        print("  refused: " + ", ".join(f"{c} {n}" for c, n in codes.most_common()), file=sys.stderr)
    if not args.dry_run:
        print(f"  report: {args.report}", file=sys.stderr)
    if interrupted:
        print("  run the same command again to continue: enrolled faces are skipped", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    return asyncio.run(run_import(args))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="enrol a folder (DIR/<subject_id>/<photo> or DIR/<id>.jpg) or a CSV (subject_id,face_id,path_or_url)",
    )
    p.add_argument("source", help="a folder of photos, or a CSV file")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    p.add_argument("--batch", type=int, default=1, help="photos per request (batch insert); default 1")
    p.add_argument("--dedup", action="store_true", help="refuse a person already enrolled under another id")
    p.add_argument("--dry-run", action="store_true", help="say what would be enrolled; send no photo")
    p.add_argument("--report", default="faceauth-import-report.csv", help="the CSV of refused photos")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_connection_options(p)
    p.set_defaults(func=_run)
