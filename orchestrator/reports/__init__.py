"""What the tools report about journeys, read from their definitions and their decisions: the
journey graph (:mod:`~orchestrator.reports.graph`), per-journey statistics and the split-arm tests
(:mod:`~orchestrator.reports.stats`), and a shadow version's decisions against the live one's
(:mod:`~orchestrator.reports.shadow`).

Pure like the core, and apart from it: the engine never imports a report, and no report imports the
worker's runtime; ``admin`` (the commands) and the worker's ``/stats`` endpoint use them.
"""
