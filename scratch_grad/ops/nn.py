"""Neural-network ops (filled in by the nn-ops work)."""
__all__ = []
