"""fetch/verify against a local HTTP server on 127.0.0.1 serving synthetic artifacts.

The suite-wide loopback guard (tests/conftest.py) makes any connection or name lookup for a
non-loopback address fail the test, so nothing here can reach the network.
"""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from faceauth.inference.artefacts.catalog import CATALOG, Artifact, ModelFile
from faceauth.inference.artefacts.fetch import (
    MIRROR_ENV,
    FetchError,
    FetchProgress,
    default_client,
    download_hub_file,
    fetch,
    source_urls,
    verify,
)
from tests.conftest import LocalServer

DET = b"synthetic detector weights " * 100
REC = b"synthetic recognizer weights " * 200
EXTRA = b"an extra file of the pack"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    # trust_env=False: proxy variables must not send loopback traffic elsewhere. Redirects are
    # left off here on purpose: fetch must follow them by itself.
    with httpx.Client(trust_env=False, timeout=10.0) as c:
        yield c


# -- artifact builders -------------------------------------------------------------------


def make_zip(entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def zip_artifact(
    server: LocalServer,
    entries: dict[str, bytes],
    *,
    name: str = "testpack",
    archive_pinned: bool = True,
    files: tuple[ModelFile, ...] | None = None,
    symlinks: dict[str, str] | None = None,
) -> Artifact:
    data = make_zip(entries, symlinks)
    server.files[f"/releases/{name}.zip"] = data
    if files is None:
        files = (ModelFile("det.onnx", sha(DET), len(DET)), ModelFile("rec.onnx", sha(REC), len(REC)))
    return Artifact(
        name=name,
        kind="zip",
        url=server.url(f"/releases/{name}.zip"),
        sha256=sha(data) if archive_pinned else None,
        size=len(data) if archive_pinned else None,
        files=files,
        license="test",
        description="synthetic pack",
    )


def file_artifact(server: LocalServer, *, name: str = "spoof", pinned: bool = True) -> Artifact:
    server.files["/weights/Upstream.onnx"] = DET
    return Artifact(
        name=name,
        kind="file",
        url=server.url("/weights"),
        sha256=None,
        files=(ModelFile("local_name.onnx", sha(DET) if pinned else None, len(DET), source="Upstream.onnx"),),
        license="test",
        description="synthetic single file",
    )


def leftovers(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir()) if model_dir.exists() else []


# -- successful installs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "layout",
    [
        {"det.onnx": DET, "rec.onnx": REC, "extra.onnx": EXTRA},  # flat, like buffalo_l.zip
        {"testpack/det.onnx": DET, "testpack/rec.onnx": REC, "testpack/extra.onnx": EXTRA},  # antelopev2
    ],
    ids=["flat", "single-top-folder"],
)
def test_zip_fetch_installs_pack_and_verifies(
    tmp_path: Path, server: LocalServer, client: httpx.Client, layout: dict[str, bytes]
) -> None:
    artifact = zip_artifact(server, layout)
    events: list[FetchProgress] = []
    model_dir = tmp_path / "models"

    target = fetch(artifact, model_dir, client=client, progress=events.append)

    assert target == model_dir / "testpack"
    assert (target / "det.onnx").read_bytes() == DET
    assert (target / "rec.onnx").read_bytes() == REC
    assert (target / "extra.onnx").read_bytes() == EXTRA  # covered by the archive pin
    assert leftovers(model_dir) == ["testpack"]  # no staging dir, no temp file
    assert [r.state for r in verify(model_dir, [artifact])] == ["ok"]
    downloads = [e for e in events if e.stage == "download"]
    archive_size = len(server.files["/releases/testpack.zip"])
    assert downloads and downloads[-1].done == downloads[-1].total == archive_size
    assert events[-1].stage == "installed"


def test_single_file_artifact_lands_in_its_own_folder(
    tmp_path: Path, server: LocalServer, client: httpx.Client
) -> None:
    artifact = file_artifact(server)

    target = fetch(artifact, tmp_path, client=client)

    assert target == tmp_path / "spoof"
    assert (target / "local_name.onnx").read_bytes() == DET
    assert server.requests == ["/weights/Upstream.onnx"]
    assert leftovers(tmp_path) == ["spoof"]
    assert verify(tmp_path, [artifact])[0].state == "ok"


def test_redirect_is_followed(tmp_path: Path, server: LocalServer, client: httpx.Client) -> None:
    artifact = zip_artifact(server, {"det.onnx": DET, "rec.onnx": REC})
    server.redirects["/download/testpack.zip"] = server.url("/releases/testpack.zip")
    artifact = replace(artifact, url=server.url("/download/testpack.zip"))

    fetch(artifact, tmp_path, client=client)

    assert server.requests == ["/download/testpack.zip", "/releases/testpack.zip"]
    assert verify(tmp_path, [artifact])[0].state == "ok"


def test_second_fetch_is_a_no_op_without_requests(tmp_path: Path, server: LocalServer, client: httpx.Client) -> None:
    artifact = zip_artifact(server, {"det.onnx": DET, "rec.onnx": REC})
    fetch(artifact, tmp_path, client=client)
    assert len(server.requests) == 1
    events: list[FetchProgress] = []

    again = fetch(artifact, tmp_path, client=client, progress=events.append)

    assert again == tmp_path / "testpack"
    assert len(server.requests) == 1
    assert [e.stage for e in events] == ["skip"]


def test_damaged_pack_is_replaced_atomically(tmp_path: Path, server: LocalServer, client: httpx.Client) -> None:
    artifact = zip_artifact(server, {"det.onnx": DET, "rec.onnx": REC})
    fetch(artifact, tmp_path, client=client)
    (tmp_path / "testpack" / "rec.onnx").write_bytes(b"tampered")
    assert verify(tmp_path, [artifact])[0].state == "mismatch"

    fetch(artifact, tmp_path, client=client)

    assert len(server.requests) == 2
    assert verify(tmp_path, [artifact])[0].state == "ok"
    assert leftovers(tmp_path) == ["testpack"]


def test_mirror_env_and_url_override(
    tmp_path: Path, server: LocalServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = zip_artifact(server, {"det.onnx": DET, "rec.onnx": REC})
    data = server.files.pop("/releases/testpack.zip")  # the catalog URL now answers 404
    server.files["/mirror/testpack.zip"] = data
    server.files["/elsewhere/any-name.zip"] = data
    monkeypatch.setenv(MIRROR_ENV, server.url("/mirror/"))

    fetch(artifact, tmp_path / "a", client=client)
    fetch(artifact, tmp_path / "b", client=client, url_override=server.url("/elsewhere/any-name.zip"))

    assert server.requests == ["/mirror/testpack.zip", "/elsewhere/any-name.zip"]
    spoof = file_artifact(server)
    assert source_urls(spoof) == {"local_name.onnx": server.url("/mirror/local_name.onnx")}
    assert source_urls(spoof, mirror="") == {"local_name.onnx": server.url("/weights/Upstream.onnx")}


# -- failures leave nothing behind --------------------------------------------------------


def test_archive_checksum_mismatch_installs_nothing(tmp_path: Path, server: LocalServer, client: httpx.Client) -> None:
    artifact = zip_artifact(server, {"det.onnx": DET, "rec.onnx": REC})
    artifact = replace(artifact, sha256="0" * 64)

    with pytest.raises(FetchError, match=r"'testpack'.*sha256 mismatch"):
        fetch(artifact, tmp_path, client=client)

    assert leftovers(tmp_path) == []
    assert verify(tmp_path, [artifact])[0].state == "missing"


def test_file_checksum_mismatch_inside_a_pinned_archive(
    tmp_path: Path, server: LocalServer, client: httpx.Client
) -> None:
    files = (ModelFile("det.onnx", "1" * 64, len(DET)), ModelFile("rec.onnx", sha(REC)))
    artifact = zip_artifact(server, {"det.onnx": DET, "rec.onnx": REC}, files=files)

    with pytest.raises(FetchError, match=r"det\.onnx"):
        fetch(artifact, tmp_path, client=client)

    assert leftovers(tmp_path) == []


def test_single_file_mismatch_and_wrong_size(tmp_path: Path, server: LocalServer, client: httpx.Client) -> None:
    artifact = file_artifact(server)
    bad_hash = replace(artifact, files=(replace(artifact.files[0], sha256="2" * 64),))
    bad_size = replace(artifact, files=(replace(artifact.files[0], size=len(DET) + 1),))

    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch(bad_hash, tmp_path, client=client)
    with pytest.raises(FetchError, match="pinned size"):
        fetch(bad_size, tmp_path, client=client)

    assert leftovers(tmp_path) == []


def test_http_error_names_the_artifact(tmp_path: Path, server: LocalServer, client: httpx.Client) -> None:
    artifact = replace(file_artifact(server, name="gone"), url=server.url("/nothing-here"))

    with pytest.raises(FetchError, match=r"model 'gone'.*HTTP 404"):
        fetch(artifact, tmp_path, client=client)

    assert leftovers(tmp_path) == []


def test_failed_refetch_keeps_the_existing_pack(tmp_path: Path, server: LocalServer, client: httpx.Client) -> None:
    artifact = zip_artifact(server, {"det.onnx": DET, "rec.onnx": REC})
    fetch(artifact, tmp_path, client=client)
    (tmp_path / "testpack" / "rec.onnx").write_bytes(b"tampered")
    server.files["/releases/testpack.zip"] = make_zip({"det.onnx": DET, "rec.onnx": b"evil"})

    with pytest.raises(FetchError):
        fetch(artifact, tmp_path, client=client)

    assert (tmp_path / "testpack" / "rec.onnx").read_bytes() == b"tampered"
    assert leftovers(tmp_path) == ["testpack"]


@pytest.mark.parametrize(
    ("entries", "symlinks", "message"),
    [
        ({"det.onnx": DET, "rec.onnx": REC, "../evil.onnx": b"x"}, None, "escapes"),
        ({"det.onnx": DET, "rec.onnx": REC, "sub/../../evil.onnx": b"x"}, None, "escapes"),
        ({"det.onnx": DET, "rec.onnx": REC, "/abs/evil.onnx": b"x"}, None, "absolute"),
        ({"det.onnx": DET, "rec.onnx": REC, "..\\evil.onnx": b"x"}, None, "escapes"),
        ({"det.onnx": DET, "rec.onnx": REC}, {"link.onnx": "../../evil.onnx"}, "symbolic link"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "backslash", "symlink"],
)
def test_hostile_archive_is_rejected(
    tmp_path: Path,
    server: LocalServer,
    client: httpx.Client,
    entries: dict[str, bytes],
    symlinks: dict[str, str] | None,
    message: str,
) -> None:
    # The archive pin matches: the extraction checks alone must stop it.
    artifact = zip_artifact(server, entries, symlinks=symlinks)
    model_dir = tmp_path / "a" / "models"

    with pytest.raises(FetchError, match=message):
        fetch(artifact, model_dir, client=client)

    assert not (tmp_path / "a").exists()  # directories created for the fetch are removed too
    assert not any(p.name == "evil.onnx" for p in tmp_path.rglob("*"))


def test_archive_missing_a_pinned_file_is_rejected(tmp_path: Path, server: LocalServer, client: httpx.Client) -> None:
    artifact = zip_artifact(server, {"det.onnx": DET})

    with pytest.raises(FetchError, match=r"lacks rec\.onnx"):
        fetch(artifact, tmp_path, client=client)

    assert leftovers(tmp_path) == []


# -- unpinned artifacts ----------------------------------------------------------------


def test_unpinned_artifact_is_refused_without_a_request(
    tmp_path: Path, server: LocalServer, client: httpx.Client
) -> None:
    artifact = file_artifact(server, pinned=False)

    with pytest.raises(FetchError, match="allow-unpinned"):
        fetch(artifact, tmp_path, client=client)

    assert server.requests == []
    assert leftovers(tmp_path) == []


def test_unpinned_artifact_installs_when_allowed_and_reports_the_hash(
    tmp_path: Path, server: LocalServer, client: httpx.Client
) -> None:
    artifact = file_artifact(server, pinned=False)
    events: list[FetchProgress] = []

    fetch(artifact, tmp_path, client=client, allow_unpinned=True, progress=events.append)

    assert (tmp_path / "spoof" / "local_name.onnx").read_bytes() == DET
    unpinned = [e for e in events if e.stage == "unpinned"]
    assert len(unpinned) == 1 and sha(DET) in unpinned[0].message
    assert verify(tmp_path, [artifact])[0].state == "unpinned"
    fetch(artifact, tmp_path, client=client, allow_unpinned=True)
    assert len(server.requests) == 1  # present counts as installed when allowed


def test_unpinned_archive_with_pinned_files_installs_only_checked_files(
    tmp_path: Path, server: LocalServer, client: httpx.Client
) -> None:
    artifact = zip_artifact(server, {"det.onnx": DET, "rec.onnx": REC, "extra.onnx": EXTRA}, archive_pinned=False)
    assert artifact.pinned

    target = fetch(artifact, tmp_path, client=client)

    assert sorted(p.name for p in target.iterdir()) == ["det.onnx", "rec.onnx"]
    assert verify(tmp_path, [artifact])[0].state == "ok"


# -- verify ------------------------------------------------------------------------------


def test_verify_reports_missing_and_mismatch(tmp_path: Path, server: LocalServer, client: httpx.Client) -> None:
    pack = zip_artifact(server, {"det.onnx": DET, "rec.onnx": REC})
    single = file_artifact(server)
    catalog = {pack.name: pack, single.name: single}

    results = verify(tmp_path, catalog=catalog)
    assert [(r.name, r.state) for r in results] == [("testpack", "missing"), ("spoof", "missing")]
    assert results[0].path == tmp_path / "testpack"

    fetch("testpack", tmp_path, client=client, catalog=catalog)
    fetch("spoof", tmp_path, client=client, catalog=catalog)
    assert [r.state for r in verify(tmp_path, catalog=catalog)] == ["ok", "ok"]

    (tmp_path / "testpack" / "det.onnx").unlink()
    (tmp_path / "spoof" / "local_name.onnx").write_bytes(b"x" * len(DET))  # same size, other bytes
    results = verify(tmp_path, ["testpack", "spoof"], catalog=catalog)
    assert [r.state for r in results] == ["missing", "mismatch"]
    assert "det.onnx" in results[0].detail
    assert "local_name.onnx" in results[1].detail and sha(DET) in results[1].detail


def test_unknown_name_is_a_fetch_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="not in the model catalog"):
        fetch("no-such-model", tmp_path)
    with pytest.raises(FetchError, match="not in the model catalog"):
        verify(tmp_path, ["no-such-model"])


# -- the real catalog ------------------------------------------------------------------


def test_catalog_entries_are_pinned_and_documented() -> None:
    assert set(CATALOG) == {"buffalo_l", "antelopev2", "buffalo_s", "auraface", "minifasnet_v2"}
    mirror_names: list[str] = []
    for artifact in CATALOG.values():
        assert artifact.pinned, artifact.name
        assert artifact.url.startswith("https://"), artifact.name
        assert artifact.license and artifact.description
        mirror_names.extend(artifact.mirror_names())
        if artifact.kind == "zip":
            assert artifact.sha256 and artifact.size
        assert all(f.sha256 and f.size for f in artifact.files), artifact.name
    assert len(mirror_names) == len(set(mirror_names)), "a flat mirror needs distinct file names"
    assert "non-commercial" in CATALOG["buffalo_l"].license
    assert "Apache-2.0" in CATALOG["auraface"].license
    assert "Apache-2.0" in CATALOG["minifasnet_v2"].license


def test_default_client_timeouts_and_redirects() -> None:
    with default_client() as c:
        assert c.follow_redirects
        assert c.timeout.connect == 10.0 and c.timeout.read == 60.0


def test_real_minifasnet_pin_rejects_another_export(
    tmp_path: Path, server: LocalServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch, shared_dir: Path
) -> None:
    """The shared copy is the same network exported differently: the catalog pin must tell them apart."""
    source = shared_dir / "models" / "minifasnet_v2_80x80.onnx"
    server.files["/mirror/minifasnet_v2_80x80.onnx"] = source.read_bytes()
    monkeypatch.setenv(MIRROR_ENV, server.url("/mirror"))

    with pytest.raises(FetchError, match=r"minifasnet_v2.*(sha256|size)"):
        fetch("minifasnet_v2", tmp_path, client=client)

    assert not (tmp_path / "minifasnet_v2").exists()
    assert [r.state for r in verify(tmp_path, ["minifasnet_v2"])] == ["missing"]


def test_hub_checkpoint_download_is_atomic_and_reports_its_digest(
    tmp_path: Path, server: LocalServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = b"pretend checkpoint bytes" * 100
    server.files["/hub/acme/nsfw-model/resolve/main/nsfw_model.pth"] = payload
    monkeypatch.setenv("HF_ENDPOINT", server.url("/hub"))
    dest = tmp_path / "models" / "nsfw_model.pth"

    digest = download_hub_file("acme/nsfw-model", "nsfw_model.pth", dest, client=client)

    assert dest.read_bytes() == payload and digest == hashlib.sha256(payload).hexdigest()
    with pytest.raises(FetchError):
        download_hub_file("acme/nsfw-model", "missing.pth", tmp_path / "models" / "missing.pth", client=client)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["nsfw_model.pth"]  # no partial file left
    with pytest.raises(ValueError):
        download_hub_file("acme/nsfw-model", "../escape.pth", tmp_path / "x.pth", client=client)


# -- offline installs: file:// URLs and local paths ----------------------------------------------------


def test_a_file_url_or_a_local_path_installs_offline_under_the_same_pin(
    tmp_path: Path, shared_dir: Path, server: LocalServer
) -> None:
    source = shared_dir / "models" / "minifasnet_v2_80x80.onnx"
    data = source.read_bytes()
    artifact = Artifact(
        name="spoof_offline",
        kind="file",
        url=server.url("/never-asked"),
        sha256=None,
        files=(ModelFile("minifasnet_v2_80x80.onnx", sha(data), len(data)),),
        license="test",
        description="the shared MiniFASNet file, pinned to its own digest",
    )

    by_url = fetch(artifact, tmp_path / "a", url_override=source.as_uri())
    by_path = fetch(artifact, tmp_path / "b", url_override=str(source))

    for target in (by_url, by_path):
        assert (target / "minifasnet_v2_80x80.onnx").read_bytes() == data
    assert server.requests == []  # nothing went to the network
    assert [r.state for r in verify(tmp_path / "a", [artifact])] == ["ok"]

    wrong = replace(artifact, files=(ModelFile("minifasnet_v2_80x80.onnx", "0" * 64, len(data)),))
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch(wrong, tmp_path / "c", url_override=source.as_uri())
    assert leftovers(tmp_path / "c") == []
    with pytest.raises(FetchError, match="cannot read"):
        fetch(artifact, tmp_path / "d", url_override=(tmp_path / "absent.onnx").as_uri())


def test_the_real_catalog_pin_applies_to_a_local_file(tmp_path: Path, shared_dir: Path) -> None:
    """The shared export is not the catalog's file: fetched from disk, it is refused just as from the network."""
    source = shared_dir / "models" / "minifasnet_v2_80x80.onnx"
    with pytest.raises(FetchError, match=r"minifasnet_v2.*(sha256|size)"):
        fetch("minifasnet_v2", tmp_path, url_override=source.as_uri())
    assert not (tmp_path / "minifasnet_v2").exists()
