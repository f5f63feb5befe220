"""The orphan sweep: what interrupted writes left behind, across every tenant.

A write puts the image first, then the vector, so a crash (or an outage) between the two can leave an image no
vector row points to, and, more rarely, a row whose image is gone. Each write tidies its own face first
(`FaceRepository.editing`); the sweep finds such faces everywhere, which no write may ever touch again:

1. every object key is listed: only revision keys of the face layout (``<tenant>/<face_id>/<ms>-<hex>``) count;
   anything else (``_uploads/`` photos waiting to be checked, ``_keys/``) is left alone;
2. every vector row is read, page by page;
3. a face is suspect when it has an image no row points to, a row whose image is missing, or several rows, and
   the evidence is older than ORPHAN_GRACE_MS (a younger one may be another replica's write in progress);
4. each suspect face is repaired under its lock (`FaceRepository.repair`), which reads both stores again, so
   what changed since the listing is judged afresh. An old image of a face that has no row at all and whose
   tenant cannot be read back from the key (a long tenant name is shortened there) is deleted directly: no row
   can ever point to it, as every write makes a new key.

Run by `faceauth repair` and, in the background, when the Face API starts (FACEAUTH_STARTUP_SWEEP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from faceauth.contracts.ids import FACE_ID_MAX
from faceauth.faces import repository as faces
from faceauth.faces.repository import FaceRepository
from faceauth.kit.errors import AppError
from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.keys import REVISION_KEY, face_prefix, revision_ms

log = logging.getLogger(__name__)

_PAGE = 1000


@dataclass
class SweepReport:
    images_scanned: int = 0  # revision images (keys of the face layout)
    other_keys: int = 0  # keys outside the face layout, left alone
    rows_scanned: int = 0
    faces_checked: int = 0  # suspect faces looked at again under their lock
    faces_tidied: int = 0  # faces something was removed from
    orphan_images_removed: int = 0
    rows_without_image_removed: int = 0
    replaced_rows_removed: int = 0
    seconds: float = 0.0
    _tidied: set[str] = field(default_factory=set, repr=False)

    def summary(self) -> str:
        return (
            f"scanned {self.images_scanned} image(s) ({self.other_keys} other key(s) left alone) and "
            f"{self.rows_scanned} vector row(s); removed {self.orphan_images_removed} orphan image(s), "
            f"{self.rows_without_image_removed} row(s) without image and {self.replaced_rows_removed} replaced "
            f"row(s); {self.faces_tidied} face(s) tidied of {self.faces_checked} checked, in {self.seconds:.1f} s"
        )

    def note_removed(self, face: str, images: int = 0, rows_without_image: int = 0, replaced_rows: int = 0) -> None:
        self.orphan_images_removed += images
        self.rows_without_image_removed += rows_without_image
        self.replaced_rows_removed += replaced_rows
        if images or rows_without_image or replaced_rows:
            self._tidied.add(face)
            self.faces_tidied = len(self._tidied)


@dataclass
class _Face:
    tenant: str
    face_id: str
    rows: int = 0
    newest_ms: int = 0


async def sweep_orphans(repository: FaceRepository, *, page_size: int = _PAGE) -> SweepReport:
    """Find and remove, in every tenant, the leftovers of interrupted writes (see the module docstring).

    Raises StorageUnavailable, or AppError 503, when a store fails meanwhile: what was removed until then stays
    removed, and a later sweep does the rest."""
    started = time.monotonic()
    report = SweepReport()

    # 1. The images, by face prefix. Listed before the rows: a face written in between has a row whose image
    #    was not listed, and such a row is too young to be suspect.
    listed: set[str] = set()
    images: dict[str, list[str]] = {}
    for key in await repository.objects.list(""):
        if REVISION_KEY.fullmatch(key) is None or len(key.split("/")[1]) > FACE_ID_MAX:
            report.other_keys += 1
            continue
        report.images_scanned += 1
        listed.add(key)
        images.setdefault(key.rsplit("/", 1)[0] + "/", []).append(key)

    # 2. The rows.
    faces_by_prefix: dict[str, _Face] = {}
    referenced: set[str] = set()
    suspects: set[tuple[str, str]] = set()
    after: str | None = None
    while page := await repository.index.scan_rows(after=after, limit=page_size):
        after = page[-1].row_id
        for row in page:
            report.rows_scanned += 1
            prefix = face_prefix(row.tenant, row.face_id)
            face = faces_by_prefix.setdefault(prefix, _Face(row.tenant, row.face_id))
            face.rows += 1
            face.newest_ms = max(face.newest_ms, row.created_at_ms)
            if not row.object_key:  # stored without its image on purpose (FACEAUTH_STORE_IMAGES=false)
                continue
            referenced.add(row.object_key)
            if row.object_key not in listed and _past_grace(row.created_at_ms):
                suspects.add((row.tenant, row.face_id))

    # 3. Faces with several rows (an upsert that did not finish) and images no row points to.
    for face in faces_by_prefix.values():
        if face.rows > 1 and _past_grace(face.newest_ms):
            suspects.add((face.tenant, face.face_id))
    for prefix, keys in images.items():
        orphans = [k for k in keys if k not in referenced and _past_grace(revision_ms(k) or 0)]
        if not orphans:
            continue
        tenant_segment, face_id = prefix.split("/")[:2]
        if prefix in faces_by_prefix:
            face = faces_by_prefix[prefix]
            suspects.add((face.tenant, face.face_id))
        elif "~" not in tenant_segment:  # the segment is the tenant's name itself
            suspects.add((tenant_segment, face_id))
        else:
            # A shortened tenant name cannot be read back, and no row of this face exists: none can point to
            # these old images later either (every write makes a new key), so no lock is needed.
            for key in orphans:
                await repository.objects.delete(key)
                log.warning("orphan sweep: removed image %s (no vector row of its face)", key)
            report.note_removed(prefix, images=len(orphans))

    # 4. Each suspect face, under its lock, from a fresh read of both stores.
    for tenant, face_id in sorted(suspects):
        counts = await repository.repair(tenant, face_id)
        report.faces_checked += 1
        report.note_removed(
            face_prefix(tenant, face_id),
            images=counts.orphan_images,
            rows_without_image=counts.rows_without_image,
            replaced_rows=counts.replaced_rows,
        )
    report.seconds = time.monotonic() - started
    return report


def _past_grace(born_ms: int) -> bool:
    # Read at each call (not imported once), so the sweep and FaceRepository always agree on the grace.
    return int(time.time() * 1000) - born_ms > faces.ORPHAN_GRACE_MS


# -- at start-up -------------------------------------------------------------------------------------------------


def start_sweep(repository: FaceRepository) -> asyncio.Task[None]:
    """The sweep as a background task of the Face API (FACEAUTH_STARTUP_SWEEP): start-up does not wait for it."""
    return asyncio.create_task(_sweep_in_background(repository), name="faceauth-orphan-sweep")


async def stop_sweep(task: asyncio.Task[None] | None) -> None:
    """Cancel the start-up sweep if it still runs (at shutdown, before the stores close)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _sweep_in_background(repository: FaceRepository) -> None:
    try:
        report = await sweep_orphans(repository)
    except (StorageUnavailable, AppError) as exc:
        # Not a reason to stop serving: the next start, or `faceauth repair`, sweeps again.
        log.warning("orphan sweep at start-up failed: %s; run `faceauth repair` once the stores are back", exc)
        return
    except Exception:
        log.exception("orphan sweep at start-up failed")
        return
    log.info("orphan sweep at start-up: %s", report.summary())
