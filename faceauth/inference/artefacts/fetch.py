"""Download, check and install catalog artifacts; verify what is installed.

``fetch`` works in a private staging directory inside ``model_dir`` and publishes the
finished pack with one rename, so a failure at any step (network, checksum, a hostile
archive, a full disk) leaves ``model_dir`` exactly as it was.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

import httpx

from faceauth import __version__
from faceauth.inference.artefacts.catalog import CATALOG, CHUNK_SIZE, Artifact, ModelFile, sha256_file

log = logging.getLogger(__name__)

MIRROR_ENV = "FACEAUTH_MODEL_MIRROR"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
# Guards for downloads and archives whose size is not pinned (or is lying).
MAX_DOWNLOAD_BYTES = 4 << 30
MAX_EXTRACTED_BYTES = 8 << 30
MAX_ARCHIVE_MEMBERS = 10_000

State = Literal["ok", "missing", "mismatch", "unpinned"]
Stage = Literal["skip", "download", "extract", "unpinned", "installed"]


class FetchError(RuntimeError):
    """A model could not be fetched; nothing was installed."""

    def __init__(self, artifact: str, message: str) -> None:
        super().__init__(f"model {artifact!r}: {message}")
        self.artifact = artifact


@dataclass(frozen=True)
class FetchProgress:
    """One progress report from ``fetch``.

    ``stage="download"`` is reported per chunk with ``done``/``total`` bytes (``total`` is
    None when the server does not say); ``stage="unpinned"`` carries the computed sha256 of
    a file that had no pin in ``message``, so it can be recorded.
    """

    artifact: str
    stage: Stage
    file: str = ""
    done: int = 0
    total: int | None = None
    message: str = ""


ProgressCallback = Callable[[FetchProgress], None]


@dataclass(frozen=True)
class VerifyResult:
    name: str
    path: Path
    state: State
    detail: str


def default_client() -> httpx.Client:
    """The HTTP client ``fetch`` uses when none is given: redirects on, 10 s connect, 60 s read."""
    return httpx.Client(
        timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        follow_redirects=True,
        headers={"User-Agent": f"faceauth/{__version__} (model fetch)"},
    )


def resolve(name: str | Artifact, catalog: Mapping[str, Artifact] | None = None) -> Artifact:
    """The artifact for ``name`` (an ``Artifact`` is returned as is)."""
    if isinstance(name, Artifact):
        return name
    entries = CATALOG if catalog is None else catalog
    try:
        return entries[name]
    except KeyError:
        known = ", ".join(sorted(entries)) or "none"
        raise FetchError(name, f"not in the model catalog (known: {known})") from None


def source_urls(artifact: Artifact, *, url_override: str | None = None, mirror: str | None = None) -> dict[str, str]:
    """Where each download comes from: archive or file name -> URL.

    Precedence: ``url_override``, then ``mirror`` (default: ``$FACEAUTH_MODEL_MIRROR``), then
    the catalog URL. A mirror is a flat directory holding ``artifact.mirror_names()``. For a
    "file" artifact an override is the file's own URL when it has one file, else a base URL
    under which each file is looked up by its name.
    """
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV, "").strip() or None
    if artifact.kind == "zip":
        if url_override:
            url = url_override
        elif mirror:
            url = f"{mirror.rstrip('/')}/{artifact.archive_name}"
        else:
            url = artifact.url
        return {artifact.archive_name: url}
    if url_override and len(artifact.files) == 1:
        return {artifact.files[0].name: url_override}
    if url_override or mirror:
        base = (url_override or mirror or "").rstrip("/")
        return {f.name: f"{base}/{f.name}" for f in artifact.files}
    base = artifact.url.rstrip("/")
    return {f.name: f"{base}/{f.source or f.name}" for f in artifact.files}


def fetch(
    name: str | Artifact,
    model_dir: Path,
    *,
    url_override: str | None = None,
    client: httpx.Client | None = None,
    allow_unpinned: bool = False,
    progress: ProgressCallback | None = None,
    catalog: Mapping[str, Artifact] | None = None,
) -> Path:
    """Install ``name`` into ``model_dir/<name>/`` and return that directory.

    Does nothing (and opens no connection) when the pack is already there and verifies.
    Raises ``FetchError`` on any failure, leaving ``model_dir`` as it was.
    """
    artifact = resolve(name, catalog)
    model_dir = Path(model_dir)
    target = model_dir / artifact.name
    report = progress or _no_progress

    if not artifact.pinned and not allow_unpinned:
        raise FetchError(
            artifact.name,
            "has no sha256 pin, so a download could not be checked; refusing to install it. "
            "Pass allow_unpinned=True (faceauth models fetch --allow-unpinned) to install it "
            "anyway; the computed sha256 values are then reported so they can be pinned.",
        )

    if (target.exists() or target.is_symlink()) and not target.is_dir():
        raise FetchError(artifact.name, f"{target} exists and is not a directory; not touching it")
    current = _verify_one(artifact, target)
    if current.state == "ok" or (current.state == "unpinned" and (allow_unpinned or artifact.pinned)):
        report(FetchProgress(artifact.name, "skip", message=f"already installed: {current.detail}"))
        return target

    urls = source_urls(artifact, url_override=url_override)
    created = _missing_ancestors(model_dir)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{artifact.name}.fetch-", dir=model_dir))
    except OSError as exc:
        _remove_empty(created)
        raise FetchError(artifact.name, f"cannot write to {model_dir}: {exc}") from exc

    own_client = client is None
    http = default_client() if client is None else client
    installed = False
    try:
        pack = staging / artifact.name
        pack.mkdir()
        if artifact.kind == "zip":
            archive = staging / "download.zip.part"
            url = urls[artifact.archive_name]
            digest = _download(
                http,
                url,
                archive,
                artifact=artifact,
                label=artifact.archive_name,
                expected_size=artifact.size,
                report=report,
            )
            _check_pin(artifact, artifact.archive_name, digest, artifact.sha256, url, report)
            _extract_zip(archive, pack, artifact, report=report)
            archive.unlink()
        else:
            for model_file in artifact.files:
                part = staging / f"{model_file.name}.part"
                url = urls[model_file.name]
                digest = _download(
                    http,
                    url,
                    part,
                    artifact=artifact,
                    label=model_file.name,
                    expected_size=model_file.size,
                    report=report,
                )
                _check_pin(artifact, model_file.name, digest, model_file.sha256, url, report)
                part.rename(pack / model_file.name)
        _publish(artifact, pack, target, staging)
        installed = True
    except FetchError:
        raise
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise FetchError(artifact.name, f"install failed: {exc}") from exc
    finally:
        if own_client:
            http.close()
        shutil.rmtree(staging, ignore_errors=True)
        if not installed:
            _remove_empty(created)

    log.info("installed model %s into %s", artifact.name, target)
    report(FetchProgress(artifact.name, "installed", message=str(target)))
    return target


def verify(
    model_dir: Path,
    names: Iterable[str | Artifact] | None = None,
    *,
    catalog: Mapping[str, Artifact] | None = None,
) -> list[VerifyResult]:
    """Check installed packs against their pins; one result per artifact.

    ``state`` is "mismatch" if any listed file differs from its pin (size or sha256),
    else "missing" if the pack or a listed file is absent, else "unpinned" if a file is
    present but has no pin to check, else "ok".
    """
    entries = CATALOG if catalog is None else catalog
    selected = list(entries.values()) if names is None else [resolve(n, entries) for n in names]
    model_dir = Path(model_dir)
    return [_verify_one(artifact, model_dir / artifact.name) for artifact in selected]


# -- internals ---------------------------------------------------------------------------


def _no_progress(_event: FetchProgress) -> None:
    return None


def _missing_ancestors(path: Path) -> list[Path]:
    """``path`` and its parents that do not exist yet, deepest first."""
    missing: list[Path] = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_empty(dirs: list[Path]) -> None:
    """Remove directories this call created, deepest first, if they are still empty."""
    for directory in dirs:
        try:
            directory.rmdir()
        except OSError:
            return


def _verify_one(artifact: Artifact, pack: Path) -> VerifyResult:
    if not pack.is_dir():
        return VerifyResult(artifact.name, pack, "missing", "not installed")
    missing: list[str] = []
    mismatched: list[str] = []
    unpinned: list[str] = []
    for model_file in artifact.files:
        path = pack / model_file.name
        if not path.is_file():
            missing.append(model_file.name)
            continue
        size = path.stat().st_size
        if model_file.size is not None and size != model_file.size:
            mismatched.append(f"{model_file.name}: {size} bytes, pinned {model_file.size}")
            continue
        if model_file.sha256 is None:
            unpinned.append(model_file.name)
            continue
        digest = sha256_file(path)
        if digest != model_file.sha256:
            mismatched.append(f"{model_file.name}: sha256 {digest}, pinned {model_file.sha256}")
    if mismatched:
        return VerifyResult(artifact.name, pack, "mismatch", "; ".join(mismatched))
    if missing:
        return VerifyResult(artifact.name, pack, "missing", "missing: " + ", ".join(missing))
    if unpinned:
        return VerifyResult(artifact.name, pack, "unpinned", "present, no pin: " + ", ".join(unpinned))
    if not artifact.files:
        # Only an unpinned custom archive can have no listed files: presence is all we know.
        return VerifyResult(artifact.name, pack, "unpinned", "installed; no files are pinned")
    return VerifyResult(artifact.name, pack, "ok", f"{len(artifact.files)} file(s) match their pins")


def _download(
    client: httpx.Client,
    url: str,
    dest: Path,
    *,
    artifact: Artifact,
    label: str,
    expected_size: int | None,
    report: ProgressCallback,
) -> str:
    """Stream ``url`` (http(s), or ``file://`` / a local path for offline installs) into ``dest``; return the
    sha256 of the bytes written. A local file is checked exactly as a download is (size, then the pin)."""
    limit = expected_size if expected_size is not None else MAX_DOWNLOAD_BYTES
    digest = hashlib.sha256()
    done = 0

    def write(chunks: Iterator[bytes], total: int | None) -> None:
        nonlocal done
        if total is not None and expected_size is not None and total != expected_size:
            raise FetchError(
                artifact.name,
                f"{label} at {url} is {total} bytes, pinned size is {expected_size}; not installing it",
            )
        with open(dest, "xb") as out:
            for chunk in chunks:
                done += len(chunk)
                if done > limit:
                    raise FetchError(artifact.name, f"{label} from {url} is larger than {limit} bytes")
                out.write(chunk)
                digest.update(chunk)
                report(FetchProgress(artifact.name, "download", label, done, total))

    local = _local_path(url)
    if local is not None:
        try:
            with open(local, "rb") as source:
                write(iter(lambda: source.read(CHUNK_SIZE), b""), os.fstat(source.fileno()).st_size)
        except OSError as exc:
            raise FetchError(artifact.name, f"cannot read {local}: {exc.strerror or exc}") from exc
    else:
        try:
            with client.stream("GET", url, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise FetchError(artifact.name, f"HTTP {response.status_code} for {url}")
                write(response.iter_bytes(CHUNK_SIZE), _content_length(response))
        except httpx.TimeoutException as exc:
            raise FetchError(artifact.name, f"timed out downloading {url}: {exc!r}") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise FetchError(artifact.name, f"download of {url} failed: {exc}") from exc
    if expected_size is not None and done != expected_size:
        raise FetchError(artifact.name, f"{label} from {url}: got {done} bytes, pinned size is {expected_size}")
    return digest.hexdigest()


def _local_path(url: str) -> Path | None:
    """The file a ``file://`` URL or a plain path names; None for a network URL."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise FetchError("model", f"{url}: a file:// URL must name a local file (file:///path)")
        return Path(urllib.request.url2pathname(parsed.path))
    if not parsed.scheme or (len(parsed.scheme) == 1 and os.name == "nt"):  # a path (C:\ on Windows)
        return Path(url).expanduser()
    return None


def _content_length(response: httpx.Response) -> int | None:
    if response.headers.get("content-encoding", "identity") != "identity":
        return None  # the header counts encoded bytes; iter_bytes yields decoded ones
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _check_pin(
    artifact: Artifact, label: str, digest: str, pinned: str | None, url: str, report: ProgressCallback
) -> None:
    if pinned is None:
        message = f"{label} has no pin; its sha256 is {digest}"
        log.warning("model %s: %s", artifact.name, message)
        report(FetchProgress(artifact.name, "unpinned", label, message=message))
        return
    if digest != pinned:
        raise FetchError(
            artifact.name,
            f"sha256 mismatch for {label} from {url}: got {digest}, pinned {pinned}; nothing installed.",
        )


def _member_path(info: zipfile.ZipInfo, artifact: Artifact) -> PurePosixPath | None:
    """The member's safe relative path, None for entries to skip; raises for hostile ones."""
    raw = info.filename
    name = raw.replace("\\", "/")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise FetchError(artifact.name, f"archive entry {raw!r} is a symbolic link; refusing the archive")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise FetchError(artifact.name, f"archive entry {raw!r} is not a regular file; refusing the archive")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\0" in name:
        raise FetchError(artifact.name, f"archive entry {raw!r} has an absolute path; refusing the archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise FetchError(artifact.name, f"archive entry {raw!r} escapes the target folder; refusing the archive")
    if info.is_dir() or not parts or parts[0] == "__MACOSX":
        return None
    return PurePosixPath(*parts)


def _extract_zip(archive: Path, pack: Path, artifact: Artifact, *, report: ProgressCallback) -> None:
    """Unpack a checked archive into ``pack``; verify every listed file's pin."""
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        if len(members) > MAX_ARCHIVE_MEMBERS:
            raise FetchError(artifact.name, f"archive has {len(members)} entries; refusing it")
        entries = [(info, path) for info in members if (path := _member_path(info, artifact)) is not None]
        if not entries:
            raise FetchError(artifact.name, "archive holds no files")
        # Flatten a single top-level folder (e.g. antelopev2/…) so files land in <pack>/.
        tops = {path.parts[0] for _, path in entries}
        if len(tops) == 1 and all(len(path.parts) > 1 for _, path in entries):
            entries = [(info, PurePosixPath(*path.parts[1:])) for info, path in entries]
        pins = {f.name: f for f in artifact.files}
        if artifact.sha256 is None and artifact.pinned:
            # The archive itself is not pinned: install only the files whose pins we check.
            entries = [(info, path) for info, path in entries if str(path) in pins]
        seen: set[str] = set()
        for _, path in entries:
            if str(path) in seen:
                raise FetchError(artifact.name, f"archive holds {path} twice; refusing it")
            seen.add(str(path))
        declared = sum(info.file_size for info, _ in entries)
        if declared > MAX_EXTRACTED_BYTES:
            raise FetchError(artifact.name, f"archive unpacks to {declared} bytes; refusing it")

        digests: dict[str, str] = {}
        for info, path in entries:
            out_path = pack.joinpath(*path.parts)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            report(FetchProgress(artifact.name, "extract", str(path), total=info.file_size))
            with zf.open(info) as src, open(out_path, "xb") as dst:
                digests[str(path)] = _copy_hashing(src, dst)

    missing = [name for name in pins if name not in digests]
    if missing:
        raise FetchError(artifact.name, "archive lacks " + ", ".join(missing) + "; nothing installed")
    for name, model_file in pins.items():
        size = (pack / name).stat().st_size
        if model_file.size is not None and size != model_file.size:
            raise FetchError(
                artifact.name,
                f"{name} in the archive is {size} bytes, pinned {model_file.size}; nothing installed",
            )
        _check_pin(artifact, name, digests[name], model_file.sha256, f"the {artifact.name} archive", report)


def _copy_hashing(src: BinaryIO, dst: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := src.read(CHUNK_SIZE):
        dst.write(chunk)
        digest.update(chunk)
    return digest.hexdigest()


def _publish(artifact: Artifact, pack: Path, target: Path, staging: Path) -> None:
    """Move the finished ``pack`` to ``target`` in one rename; keep the old one until then."""
    old: Path | None = None
    if target.exists() or target.is_symlink():
        old = staging / "previous"
        os.rename(target, old)
    try:
        os.rename(pack, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        raise


HUB_ENDPOINT_ENV = "HF_ENDPOINT"


def download_hub_file(repo_id: str, filename: str, dest: Path, *, client: httpx.Client | None = None) -> str:
    """Download ``filename`` from a Hugging Face model repo into ``dest`` (atomically); return its sha256.

    For the reference system's ``*_HF_REPO_ID`` settings. The hub publishes no checksum we could pin, so the
    caller logs the digest. ``HF_ENDPOINT`` points at a mirror, as with the hub's own tools. A file name
    that is not a plain name is refused (ValueError) before anything is requested.
    """
    base = os.environ.get(HUB_ENDPOINT_ENV, "https://huggingface.co").rstrip("/")
    artifact = Artifact(
        name=filename,
        kind="file",
        url=f"{base}/{repo_id}/resolve/main",
        sha256=None,
        files=(ModelFile(filename, None),),
        license="as published in the hub repository",
        description=f"{filename} from {repo_id}",
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    owned = client is None
    client = client or default_client()
    try:
        digest = _download(
            client,
            f"{artifact.url}/{filename}",
            partial,
            artifact=artifact,
            label=filename,
            expected_size=None,
            report=_no_progress,
        )
        partial.replace(dest)
        return digest
    finally:
        partial.unlink(missing_ok=True)
        if owned:
            client.close()
