"""The pure core: stdlib, msgspec and PyYAML only. No Kafka, no Faust, no RocksDB."""

from orchestrator.core.catalog import JourneySet
from orchestrator.core.engine import Engine, Output, Result
from orchestrator.core.events import Event, Rejection, dead_letter
from orchestrator.core.journeyfiles import load_journey_dir, load_journey_file, parse_journey
from orchestrator.core.journeys import Journey
from orchestrator.core.policies import Policies, load_policies, parse_policies
from orchestrator.core.state import CustomerState, decode_state, encode_state
from orchestrator.core.validation import parse_event

__all__ = [
    "CustomerState", "Engine", "Event", "Journey", "JourneySet", "Output", "Policies", "Rejection", "Result",
    "dead_letter", "decode_state", "encode_state", "load_journey_dir", "load_journey_file", "load_policies",
    "parse_event", "parse_journey", "parse_policies",
]
