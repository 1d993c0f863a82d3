"""The package version, importable without importing the facade."""

__version__ = "0.1.0"
