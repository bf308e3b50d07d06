"""The load benchmark (``python -m benchmarks.load``, what ``make bench`` runs), one module per job:

=============  ==================================================================================
``cli``        the command line: ``run`` (the side-by-side benchmark), ``generate`` (the load
               generator alone against a running worker) and ``soak``
``runner``     one run: the workload, every system in turn, scale-out, clean-up
``systems``    the systems under test as child processes: passthrough, Quix Streams apps, naive
               Faust, the engine's workers
``kafkaio``    producing the backlog, paced load, the output sink, the simulated channel adapter,
               committed offsets, what is read back from the engine's topics
``phases``     the drain (sustained throughput), the paced load (latency), scale-out
``measure``    samples, windows, CPU and memory, the committed-offsets slope, the profiler
``report``     ratios, the Markdown table, the PNG chart, the JSON
``soak``       one worker at a fixed rate for minutes, a row per interval, and whether each cost grew
=============  ==================================================================================

The workload itself is :mod:`benchmarks.workload`, shared with the pure-core benchmark and the
identical-outputs check.
"""
