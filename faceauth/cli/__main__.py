import sys

from faceauth.cli import main

sys.exit(main())
