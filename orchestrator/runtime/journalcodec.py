"""What a journal record holds (:mod:`~orchestrator.runtime.journal`): the types msgspec decodes it to,
and its encoder and decoder.

Plain Python on purpose: the journal's logic is compiled with the hot path
(:mod:`orchestrator.compiled`), but msgspec reads a named tuple's field types from its annotations,
which a compiled module does not keep (decoded there, an entry's outputs came back as plain lists), as
with the event and state types (:mod:`orchestrator.core.events`, :mod:`orchestrator.core.state`).
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec


class Output(NamedTuple):
    """An output as journaled: the topic suffix, the key (customer id) and the encoded value."""

    topic: str
    key: str
    value: bytes


class Entry(NamedTuple):
    """One input's outputs."""

    offset: int
    outputs: list[Output]


# NamedTuples encode as msgpack arrays: the same bytes as the (offset, [(topic, key, value)]) tuples
# journals were written with before these types had names.
encoder = msgspec.msgpack.Encoder()
decoder = msgspec.msgpack.Decoder(list[Entry])
