"""The full-screen UI's widgets: they show what they are given and post typed messages up.

Textual code. A widget does no I/O (no httpx, sign-in, sending or downloading) and imports
neither screens nor the app: attributes down, messages up (contracts in pyproject.toml).
It may import the client library's types (tui.pen_client's dataclasses, tui.text, tui.safe_text).
"""
