"""orchestrator: real-time journey orchestration on Kafka.

Layers (imports only point downwards):

- ``orchestrator.core``: pure, synchronous decision logic (events, journeys,
  expressions, policies, state, engine). Imports only the stdlib, msgspec and
  PyYAML, never faust, aiokafka or rocksdict.
- ``orchestrator.runtime``: the Faust worker that feeds Kafka events to the core
  and writes its effects back to Kafka.
- ``orchestrator.cli``: the ``orchestrator`` command.
"""

__version__ = "0.1.0"
