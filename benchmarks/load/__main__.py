"""``python -m benchmarks.load [run|generate|soak] [options]`` (``--help`` lists them)."""

import sys

from benchmarks.load.cli import main

sys.exit(main())
