"""Commands an operator runs against a deployment: ``journeys winner`` and ``backtest``."""
