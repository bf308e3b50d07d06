"""The worker: Kafka in, the pure core's decisions, Kafka out, with its RocksDB state.

Everything the ``orchestrator worker`` process runs lives here; the protocol is told in
:mod:`orchestrator.runtime.worker`. rocksdict is imported only by :mod:`~orchestrator.runtime.store`.
"""
