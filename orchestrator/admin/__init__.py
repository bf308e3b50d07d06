"""What each ``orchestrator`` command does, besides running a worker or an adapter: produce events,
validate, list, publish, diff and draw journeys, pick a split's winner, simulate and backtest
journeys, explain a customer, read statistics, run the demo. ``orchestrator.cli`` only parses
arguments and calls in here."""
