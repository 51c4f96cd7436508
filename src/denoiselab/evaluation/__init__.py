"""Metrics. Each takes arrays it is handed; nothing here reads files."""

from .chamfer import chamfer_distance

__all__ = ["chamfer_distance"]
