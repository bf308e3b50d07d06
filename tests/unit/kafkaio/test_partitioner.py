"""Where a key goes: murmur2 (the Java client's default) or CRC-32 (librdkafka's), as
ORCH_PRODUCER_PARTITIONER says."""

from __future__ import annotations

import pytest

from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.kafkaio.clients import crc32_partition, partition_for, placement

# Partitions librdkafka 2.12 (confluent-kafka's default partitioner, consistent_random) chose for
# these keys on an 8-partition topic of the local broker, read back from the delivery reports.
LIBRDKAFKA_8 = {"c-0": 0, "c-1": 6, "c-2": 4, "c-3": 2, "c-4": 1, "c-5": 7, "c-6": 5, "c-7": 3, "c-8": 2,
                "c-9": 4, "c-10": 4, "c-11": 2}


def test_crc32_places_keys_as_librdkafka_does() -> None:
    assert {k: crc32_partition(k.encode(), 8) for k in LIBRDKAFKA_8} == LIBRDKAFKA_8


def test_murmur2_places_keys_as_aiokafka_does() -> None:
    from aiokafka.partitioner import DefaultPartitioner      # murmur2, like the Java client
    parts = list(range(8))
    for key in LIBRDKAFKA_8:
        assert partition_for(key.encode(), 8) == DefaultPartitioner()(key.encode(), parts, parts)


# Kafka's own cases for Utils.murmur2 (clients UtilsTest), as the Java int it returns.
JAVA_MURMUR2 = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
                b"a-little-bit-longer-string": -1486304829, b"abc": 479470107,
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}


def test_murmur2_is_the_java_clients_hash() -> None:
    from orchestrator.core.ids import murmur2
    assert {k: murmur2(k) - (1 << 32 if murmur2(k) >= 1 << 31 else 0) for k in JAVA_MURMUR2} == JAVA_MURMUR2


def test_murmur2_gives_aiokafkas_values_for_keys_of_every_length() -> None:
    import random

    from aiokafka.partitioner import murmur2 as aiokafkas

    from orchestrator.core.ids import murmur2
    rng = random.Random(7)
    keys = [rng.randbytes(n) for n in range(48) for _ in range(50)] + [b"\xff" * n for n in range(9)]
    assert [murmur2(k) for k in keys] == [aiokafkas(k) for k in keys]


def test_the_setting_chooses_the_partitioner() -> None:
    assert placement(Settings().producer_partitioner) is partition_for
    assert placement(Settings.from_env({"ORCH_PRODUCER_PARTITIONER": "crc32"}).producer_partitioner) is crc32_partition
    assert placement(Settings.from_env({"ORCH_PRODUCER_PARTITIONER": "MURMUR2"}).producer_partitioner) is partition_for
    # The two differ for most keys: that is why the setting matters.
    assert sum(crc32_partition(k.encode(), 8) != partition_for(k.encode(), 8) for k in LIBRDKAFKA_8) >= 6


def test_an_unknown_partitioner_is_one_sentence() -> None:
    with pytest.raises(ConfigError, match="ORCH_PRODUCER_PARTITIONER must be murmur2 .* or crc32"):
        Settings.from_env({"ORCH_PRODUCER_PARTITIONER": "random"})
