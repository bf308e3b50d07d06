"""``python -m benchmarks.load [run|generate] [options]`` (``--help`` lists them)."""

import sys

from benchmarks.load.cli import main

sys.exit(main())
