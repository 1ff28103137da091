"""An example engine (engine.py, a student-style NumPy autograd) and its adapter (adapter.py)."""
