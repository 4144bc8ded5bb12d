"""penmail: a Textual terminal client for a Private Email Network (PEN) server."""

__version__ = "0.1.0"  # the same as pyproject.toml's version (a test checks)
