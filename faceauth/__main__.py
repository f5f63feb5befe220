"""`python -m faceauth`: the same as the `faceauth` command."""

import sys

from faceauth.cli import main

sys.exit(main())
