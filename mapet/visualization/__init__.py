"""Figures of the toolkit (not registered components)."""
