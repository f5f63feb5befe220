"""StorageUnavailable: which store, what went wrong and, when the raiser knows it, which call."""

from __future__ import annotations

from faceauth.storage.errors import StorageUnavailable


def test_the_operation_is_optional():
    plain = StorageUnavailable("vectors", "no answer")
    assert (plain.store, plain.detail, plain.operation) == ("vectors", "no answer", None)
    named = StorageUnavailable("objects", "disk full", operation="put")
    assert (named.store, named.detail, named.operation) == ("objects", "disk full", "put")
    assert str(named) == str(StorageUnavailable("objects", "disk full")) == "objects store unavailable: disk full"
