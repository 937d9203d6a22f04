"""The package's version (pyproject.toml declares the same), in a module that imports nothing of the package."""

__version__ = "0.1.0"
