"""The fault suite (`make chaos`): a 3-broker KRaft cluster, workers under load, faults, a verifier."""
