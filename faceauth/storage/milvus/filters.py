"""Values in Milvus filter expressions: always quoted literals, never filter syntax."""

from __future__ import annotations

from collections.abc import Iterable


def quote(value: str) -> str:
    """A Milvus filter string literal for `value`.

    Both parsers (Milvus's ANTLR grammar and milvus-lite's tokenizer) accept exactly these escapes inside
    double quotes: \\\\ \\" \\n \\r \\t; everything else may appear raw. JSON-style \\uXXXX escapes are NOT safe
    (milvus-lite rejects them, Go rejects surrogate pairs), hence no json.dumps.
    """
    if not isinstance(value, str):
        raise TypeError(f"filter values must be str, got {type(value).__name__}")
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def quote_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(quote(v) for v in values) + "]"
