"""What the test suites, the fault suite and the benchmarks share to run the product for real:
child processes with their logs (:mod:`~orchestrator.testing.childproc`) and free ports and
broker reachability (:mod:`~orchestrator.testing.net`). Nothing in the worker imports it."""
