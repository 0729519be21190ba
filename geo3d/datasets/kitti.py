"""Placeholder, filled in by the Foundation work."""

__all__: list = []
