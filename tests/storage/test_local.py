"""What only the local folder has: its files, interrupted writes and a broken root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faceauth.storage.errors import ObjectNotFound
from faceauth.storage.local import LocalObjectStore
from faceauth.storage.objects import StoredObject
from tests.storage.conftest import BINARY, expect_each_call_named, expect_unavailable, run


def test_local_stores_files_under_the_root_and_prunes_empty_folders(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalObjectStore(root)

    async def body() -> None:
        await store.open()
        await store.put("t1/f/r1", b"abc", "image/jpeg")
        await store.put("t1/g/r1", b"def", "image/jpeg")
        assert (root / "t1" / "f" / "r1").is_file() and (root / "t1" / "g" / "r1").is_file()
        await store.delete("t1/f/r1")
        assert not (root / "t1" / "f").exists()  # the face's folder went with its last image
        assert (root / "t1" / "g" / "r1").is_file()
        await store.delete("t1/g/r1")
        assert root.is_dir() and list(root.iterdir()) == []  # never the root itself

    run(body())


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_local_interrupted_put_leaves_no_partial_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    root = tmp_path / "root"
    store = LocalObjectStore(root)
    run(store.open())
    run(store.put("t1/f/old", b"the previous version", "image/png"))

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, broken)
    for key in ("t1/f/new", "t1/f/old"):
        error = expect_unavailable(lambda key=key: store.put(key, BINARY * 100, "image/jpeg"), within_s=5)
        assert "No space left on device" in error.detail
    monkeypatch.undo()

    async def after() -> None:
        with pytest.raises(ObjectNotFound):
            await store.get("t1/f/new")
        assert await store.get("t1/f/old") == StoredObject(b"the previous version", "image/png")
        assert await store.list("") == ["t1/f/old"]

    run(after())
    # No temporary file was left behind either.
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == ["t1/f/old"]


def test_local_temporary_files_are_invisible(tmp_path: Path) -> None:
    # What a crash mid-put leaves: a temporary file next to the target. get() and list() must not see it.
    root = tmp_path / "root"
    store = LocalObjectStore(root)
    run(store.open())
    run(store.put("t1/f/r1", b"done", "image/jpeg"))
    (root / "t1" / "f" / ".r2.abc123.tmp").write_bytes(b"half an ima")
    assert run(store.list("t1/")) == ["t1/f/r1"]
    with pytest.raises(ValueError):
        run(store.get("t1/f/.r2.abc123.tmp"))


def test_local_foreign_file_is_not_served(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalObjectStore(root)
    run(store.open())
    (root / "t1" / "f").mkdir(parents=True)
    (root / "t1" / "f" / "r1").write_bytes(b"\xff\xd8\xff a jpeg copied in by hand")
    error = expect_unavailable(lambda: store.get("t1/f/r1"), within_s=5)
    assert "not an object file" in error.detail


def test_local_missing_or_broken_root_is_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalObjectStore(root)
    run(store.open())
    root.rmdir()
    root.write_bytes(b"not a folder")  # e.g. a volume that is no longer mounted as expected
    assert "not a folder" in expect_unavailable(store.ping, within_s=5).detail
    expect_unavailable(lambda: store.put("t1/f/r", b"x", "image/jpeg"), within_s=5)
    expect_unavailable(store.open, within_s=5)
    root.unlink()
    # A vanished root (an unmounted volume?) is neither an empty store nor re-created by a put; open() makes it.
    calls = [
        store.ping,
        lambda: store.put("t1/f/r", b"x", "image/jpeg"),
        lambda: store.get("t1/f/r"),
        lambda: store.list("t1/"),
        lambda: store.delete("t1/f/r"),
    ]
    for call in calls:
        assert "missing or not a folder" in expect_unavailable(call, within_s=5).detail
    assert not root.exists()
    run(store.open())
    run(store.put("t1/f/r", b"x", "image/jpeg"))
    assert run(store.get("t1/f/r")) == StoredObject(b"x", "image/jpeg")


def test_local_key_through_an_existing_object_is_a_value_error(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    run(store.open())
    run(store.put("t1/f/r", b"x", "image/jpeg"))
    with pytest.raises(ValueError, match="existing object"):
        run(store.put("t1/f/r/deeper", b"y", "image/jpeg"))
    with pytest.raises(ValueError, match="prefix of other objects"):
        run(store.put("t1/f", b"y", "image/jpeg"))
    assert run(store.list("")) == ["t1/f/r"]


def test_local_a_failure_names_the_store_call_that_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    store = LocalObjectStore(root)
    run(store.open())
    root.rmdir()  # what the store itself finds missing
    expect_each_call_named(store)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", broken)  # and what the operating system reports
    run(store.open())
    assert expect_unavailable(lambda: store.put("t1/f/r", b"x", "image/jpeg"), within_s=5).operation == "put"


class CaseFoldingStore(LocalObjectStore):
    """Fault injection only: a local store that sees its folder as a case-insensitive filesystem would (a name
    exists if any name equal to it ignoring case does), as on macOS or a Docker Desktop bind mount."""

    @staticmethod
    def _exists(path: Path) -> bool:
        return any(p.name.lower() == path.name.lower() for p in path.parent.iterdir())


def test_a_case_insensitive_root_is_refused_at_start(tmp_path: Path) -> None:
    from faceauth.storage.local import CaseInsensitiveRoot

    with pytest.raises(CaseInsensitiveRoot, match="case-insensitive"):
        run(CaseFoldingStore(tmp_path / "folded").open())
    assert [p.name for p in (tmp_path / "folded").iterdir()] == []  # the probe is gone
    run(LocalObjectStore(tmp_path / "plain").open())  # this machine's own filesystem is case-sensitive
