"""Shared fixtures: deterministic keys and a small workspace built through the pure core."""
