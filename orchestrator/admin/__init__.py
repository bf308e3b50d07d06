"""What each ``orchestrator`` command does, besides running a worker or an adapter: produce events,
validate, list, publish, diff and draw journeys, simulate them offline, explain a customer, read
statistics, run the demo. ``orchestrator.cli`` only parses arguments and calls in here."""
