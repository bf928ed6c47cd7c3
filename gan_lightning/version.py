"""The package version, stored in every checkpoint."""

__version__ = "0.1.0"
