"""orchestrator: real-time journey orchestration on Kafka.

Rooms (imports only point downwards; ``tests/repo/test_boundaries.py`` checks it):

- ``orchestrator.core``: pure, synchronous decision logic (events, journeys, expressions,
  policies, state, engine, gate). Imports only the stdlib, msgspec and PyYAML: never a Kafka
  client, RocksDB or asyncio.
- ``orchestrator.runtime``: the worker process that feeds Kafka events to the core in batches and
  writes its effects back to Kafka, with its RocksDB state.
- ``orchestrator.admin``: what each command-line tool does; ``orchestrator.adapters``: the
  reference channel adapter; ``orchestrator.localkafka``: the local dev broker;
  ``orchestrator.observability``: metrics, logs, the progress line; ``orchestrator.testing``:
  what tests and benchmarks use to run the product.
- ``orchestrator.cli``: the ``orchestrator`` command.
"""

__version__ = "0.1.0"

# Before any of the compiled hot path is imported: run it compiled only if the install compiled it
# from the sources as they are now (orchestrator/compiled.py).
from orchestrator import compiled as _compiled  # noqa: E402

_compiled.select()
