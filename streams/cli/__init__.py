"""The ``ctriage`` command: one module per command group, mounted by :mod:`streams.cli.root`."""

from streams.cli.root import app, main

__all__ = ["app", "main"]
