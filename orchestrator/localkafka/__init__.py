"""A local single-node Apache Kafka broker (KRaft, no ZooKeeper) for development and tests.

Used by ``make kafka-up`` / ``make kafka-down`` / ``make test`` through ``orchestrator kafka
up|down|status`` (the one command line for it). One module per job:

=============  ==============================================================================
``install``    Java and Maven on this machine; the broker's jars from Maven Central through
               ``pom.xml`` (package data), cached in ``${ORCH_CACHE_DIR:-~/.cache/orchestrator}``
``config``     where its files live, its port, and the files it is started with
               (``server.properties``, ``log4j2.properties``, the java command line)
``process``    pid file, lock, start, signal and wait for the JVM
``ready``      "does it answer a metadata request yet?"
``security``   the TLS certificate and the SCRAM user of the dev listeners
``broker``     :func:`up`, :func:`down`, :func:`status` (and :func:`is_up`): the above, in order
=============  ==============================================================================

- Config, data, pid file and logs live in ``${ORCH_HOME:-.orch}/kafka/`` (relative to the
  current directory)::

      server.properties   log4j2.properties   broker.pid
      broker.out (JVM stdout/stderr)   broker.log (log4j2, INFO)   data/ (log.dirs)

- The broker listens on ``127.0.0.1:${ORCH_LOCAL_KAFKA_PORT:-9092}`` (controller on port+1,
  SASL/SCRAM on port+2, TLS on port+3), advertises ``localhost:<port>``, and creates no topic
  on its own (``auto.create.topics.enable=false``, as production clusters are set up).
- If ``ORCH_BOOTSTRAP`` is set, an existing cluster is meant: :func:`up` starts nothing and
  returns that value, :func:`down` does nothing.

Every error meant for the user is a :class:`~orchestrator.errors.LocalKafkaError` whose message
says what to do. The 3-broker cluster of the fault suite (``tests/chaos/cluster.py``) is built
from the same public pieces.
"""

from orchestrator.errors import LocalKafkaError
from orchestrator.localkafka.broker import down, is_up, status, up
from orchestrator.localkafka.security import SCRAM_PASSWORD, SCRAM_USER, tls_ca_file

__all__ = ["LocalKafkaError", "SCRAM_PASSWORD", "SCRAM_USER", "down", "is_up", "status", "tls_ca_file", "up"]
