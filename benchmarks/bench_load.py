"""``python -m benchmarks.bench_load [run|load|core] [options]``: the same as ``orchestrator bench``.

The load generator, the simulated channel adapter and the side-by-side run live in
:mod:`orchestrator.bench`; this wrapper only lets the benchmarks folder run it like its other
benchmarks. ``--help`` lists the options; ``docs/benchmarks.md`` explains the method and the results.
"""

from __future__ import annotations

import sys

from orchestrator.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
