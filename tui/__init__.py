"""penmail: a Textual terminal client for a Private Email Network (PEN) server.

By feature (docs/architecture.md): the UI is app.py, cli.py, screens/, widgets/ and terminal/
(the only Textual code); the rest is the client library shared with line mode (line/):
pen_client.py, config.py, compose.py, files.py, safe_text.py, bulk.py, notices.py and the
packages signin/, drafts/, writing/, downloads/, export/, intercept/, text/; demo/ is
`penmail demo`, the only client code that imports pen_server and pen_devstack. The import
rules are import-linter contracts in pyproject.toml (`lint-imports`).
"""

__version__ = "0.1.0"  # the same as pyproject.toml's version (a test checks)
