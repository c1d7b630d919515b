"""The package version, single-sourced (hatchling reads it at build time)."""

__all__ = ["__version__"]

__version__ = "0.1.0.dev0"
