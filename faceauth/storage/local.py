"""LocalObjectStore: face images as files in a local folder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from faceauth.kit.metrics import NULL_OBSERVER, StoreObserver, timed_store_call
from faceauth.storage.errors import ObjectNotFound, ObjectTooLarge, StorageUnavailable
from faceauth.storage.objects import StoredObject, check_content_type, key_parts, op_name, split_prefix

T = TypeVar("T")

# Each file starts with this line and a line holding the content type, then the bytes as stored: one file per
# object, so one atomic rename publishes the bytes and their content type together.
_MAGIC = b"faceauth-object 1\n"
# The magic, a content type (at most 255 characters, as check_content_type allows) and its line break.
_HEADER_MAX = len(_MAGIC) + 256


class CaseInsensitiveRoot(RuntimeError):
    """The local store's folder is on a case-insensitive filesystem (start-up refuses it)."""


class LocalObjectStore:
    """Objects as files under `root` (``root/tenant/face_id/revision``).

    A put writes a temporary file next to the target, fsyncs it and renames it over the target, so a crash
    leaves either the old object or the new one, never part of one. Temporary files start with a dot, which
    no key segment may, so get() and list() never see them.
    """

    # The Face API points this at its metrics (call latency and errors); a no-op otherwise.
    observer: StoreObserver = NULL_OBSERVER

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    async def open(self) -> None:
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._ping_sync()
        self._refuse_case_insensitive()

    def _refuse_case_insensitive(self) -> None:
        """Tenants and face ids that differ only in case ("Acme", "acme") must not share a folder: refuse a root
        on a case-insensitive filesystem (macOS, Windows, Docker Desktop bind mounts)."""
        probe = self.root / f".Case-probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        try:
            folded = self._exists(probe.with_name(probe.name.lower()))
        finally:
            probe.unlink()
        if folded:
            raise CaseInsensitiveRoot(
                f"{self.root} is on a case-insensitive filesystem, where tenants and ids that differ only in case "
                "would share folders: put FACEAUTH_DATA_DIR (or the image folder) on a case-sensitive one (a Docker "
                "volume rather than a macOS bind mount), or use the S3 object store"
            )

    @staticmethod
    def _exists(path: Path) -> bool:
        return path.exists()

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        await self._run(self._ping_sync)

    def _ping_sync(self) -> None:
        self._require_root()
        # Writing is the only reliable test (permissions, read-only mounts, a full disk).
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".ping-")
        try:
            os.write(fd, b"ping")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        check_content_type(content_type)
        await self._run(self._put_sync, self._path(key), key, data, content_type)

    def _put_sync(self, path: Path, key: str, data: bytes, content_type: str) -> None:
        try:
            fd, tmp = self._temp_file(path)
        except (FileExistsError, NotADirectoryError):
            self._require_root()  # else the store is broken, not the key
            raise ValueError(f"object key {key!r} runs through an existing object") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_MAGIC + content_type.encode("ascii") + b"\n")
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, IsADirectoryError):
                raise ValueError(f"object key {key!r} is a prefix of other objects") from None
            raise
        _fsync_dir(path.parent)  # makes the rename itself durable

    def _temp_file(self, path: Path) -> tuple[int, str]:
        for attempt in range(3):
            self._make_dirs(path.parent)
            try:
                return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            except FileNotFoundError:
                # A concurrent delete removed the folder once it was empty, between our mkdir and now.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key_parts(key))

    def _require_root(self) -> None:
        # open() makes the root. A missing one may be an unmounted volume: not a place to write into, and not a
        # store that is empty (the Face API would take "no images" as "these faces are incomplete").
        if not self.root.is_dir():
            raise StorageUnavailable("objects", f"{self.root} is missing or not a folder")

    def _make_dirs(self, folder: Path) -> None:
        missing = []
        while not folder.is_dir():
            if folder == self.root:
                self._require_root()
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):
                new.mkdir()
            _fsync_dir(new.parent)

    async def get(self, key: str, *, max_bytes: int | None = None) -> StoredObject:
        return await self._run(self._get_sync, self._path(key), key, max_bytes)

    def _get_sync(self, path: Path, key: str, max_bytes: int | None = None) -> StoredObject:
        try:
            with path.open("rb") as file:
                # The header (magic and content type) is short: read at most it, the limit and one byte more.
                raw = file.read() if max_bytes is None else file.read(_HEADER_MAX + max_bytes + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            self._require_root()
            raise ObjectNotFound(key) from None
        end = raw.find(b"\n", len(_MAGIC))
        if not raw.startswith(_MAGIC) or end < 0:
            raise StorageUnavailable("objects", f"{path} is not an object file written by this store")
        if max_bytes is not None and len(raw) - end - 1 > max_bytes:
            raise ObjectTooLarge(key, max_bytes)
        return StoredObject(raw[end + 1 :], raw[len(_MAGIC) : end].decode("ascii"))

    async def delete(self, key: str) -> None:
        await self._run(self._delete_sync, self._path(key))

    async def presign(self, key: str, expires_s: int) -> str | None:
        return None  # files have no URL of their own: the Face API serves a signed link

    def _delete_sync(self, path: Path) -> None:
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            self._require_root()
            return  # no such object (a folder is a prefix, not an object)
        # Drop the folders this leaves empty (a deleted face's tenant/face_id/), stopping at the first non-empty.
        folder = path.parent
        while folder != self.root:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    async def list(self, prefix: str) -> list[str]:
        folders, partial_name = split_prefix(prefix)
        return await self._run(self._list_sync, prefix, self.root.joinpath(*folders), partial_name)

    def _list_sync(self, prefix: str, base: Path, partial_name: str) -> list[str]:
        def fail(exc: OSError) -> None:
            # A folder that is missing or vanished mid-walk (a concurrent delete) just holds no keys.
            if not isinstance(exc, FileNotFoundError | NotADirectoryError):
                raise exc

        self._require_root()
        keys = []
        for folder, subfolders, files in os.walk(base, onerror=fail):
            top = folder == str(base)
            # Below `base` only folders that start with the prefix's last, partial segment can hold matches.
            subfolders[:] = [d for d in subfolders if not d.startswith(".") and (not top or d.startswith(partial_name))]
            relative = Path(folder).relative_to(self.root).parts
            for name in files:
                key = "/".join((*relative, name))
                if not name.startswith(".") and key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        op = op_name(fn)
        with timed_store_call(self.observer, "objects", op, (StorageUnavailable,)):
            try:
                return await asyncio.to_thread(fn, *args)
            except StorageUnavailable as exc:  # found by the call itself (a missing root, a foreign file)
                exc.operation = exc.operation or op
                raise
            except OSError as exc:
                raise StorageUnavailable("objects", f"{self.root}: {exc.strerror or exc}", operation=op) from exc


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
