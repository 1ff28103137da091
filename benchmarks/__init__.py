"""Side-by-side benchmarks: scratch_grad against NumPy by hand, torch and optional competitors.

Entry point: ``python -m benchmarks.runner``, the same command as ``scratch-grad bench`` (scratch_grad/cli/bench.py
parses and checks the options, then calls ``benchmarks.runner.execute``).
Modules that import numpy or a competitor are imported lazily by the runner, after it has pinned threads.
"""
