"""The only layer that imports faust and aiokafka."""
