"""The package version (its own module, so modules of the package can read it during its import)."""

__version__ = "0.1.0"
