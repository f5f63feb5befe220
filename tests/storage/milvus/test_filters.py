"""Values are data, never filter syntax: the quoting, and ids that would widen a filter pasted in raw."""

from __future__ import annotations

import pytest

from faceauth.storage.milvus.filters import quote
from faceauth.storage.milvus.index import MilvusFaceIndex
from tests.aio import async_test
from tests.storage.milvus.conftest import M1, record, unit


def test_quote_escapes_exactly_what_the_parsers_need():
    assert quote("plain") == '"plain"'
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert quote("new\nline\ttab\rcr") == '"new\\nline\\ttab\\rcr"'
    assert quote("ünï ✓ 😀") == '"ünï ✓ 😀"'
    with pytest.raises(TypeError):
        quote(3)  # type: ignore[arg-type]


@async_test
async def test_ids_with_quotes_and_backslashes_are_plain_values(face_index: MilvusFaceIndex, rng):
    nasty_tenant = 'ten"ant\\'
    nasty_face = 'x" or tenant != "\\'  # would widen the filter if it were pasted in unescaped
    v = unit(rng)
    r = record(nasty_tenant, nasty_face)
    plain = record("acme", "x")
    await face_index.add(r, v)
    await face_index.add(plain, v)

    assert await face_index.find(nasty_tenant, nasty_face) == [r]
    assert await face_index.find("acme", nasty_face) == []
    assert [m.face_id for m in await face_index.search(nasty_tenant, v, model_id=M1, limit=5, threshold=0.0)] == [
        nasty_face
    ]
    assert [m.face_id for m in await face_index.search('acme" or "1"=="1', v, model_id=M1, limit=5, threshold=0)] == []
    await face_index.remove(nasty_tenant, [r.row_id])
    assert await face_index.find(nasty_tenant, nasty_face) == []
    assert await face_index.find("acme", "x") == [plain]
