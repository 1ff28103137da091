"""Side-by-side benchmarks: scratch_grad against NumPy by hand, torch and optional competitors.

Entry point: ``python -m benchmarks.runner`` (the ``scratch-grad bench`` CLI calls ``benchmarks.runner.main``).
Modules that import numpy or a competitor are imported lazily by the runner, after it has pinned threads.
"""
