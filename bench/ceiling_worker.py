"""``python -m bench.ceiling_worker MODULE BATCH SECONDS``: ``MODULE.ceiling(threads=None, batch=BATCH,
seconds=SECONDS)`` (bench.ort's FLOPs ceiling) printed as one JSON line after ``PREFIX``.

``bench.all`` runs it so, in a process of its own: the ONNX sessions and their memory go away with it. The module
is looked up from the working directory first, as ``python -m`` does. Exit status NO_MODULE: there is no MODULE.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from typing import Any

PREFIX = "CEILING_JSON "
NO_MODULE = 3


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)  # numpy scalars; anything else as text


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 3:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    module, batch, seconds = argv
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        found = False
    if not found:
        print(f"no module {module}", file=sys.stderr)
        return NO_MODULE
    result = importlib.import_module(module).ceiling(threads=None, batch=int(batch), seconds=float(seconds))
    print(PREFIX + json.dumps(result, default=_plain), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
