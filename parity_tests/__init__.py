"""The parity suite: every registry op and random graphs of them, checked three ways (see conftest.py)."""
