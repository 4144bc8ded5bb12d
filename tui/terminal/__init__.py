"""The app's own Textual code that is not a screen or a widget: the key gate (keys never lost
or sent to the wrong place), escape bursts read as two keys (keys), and where the terminal
cursor goes (cursor).

Textual code, like tui.app, tui.screens and tui.widgets; nothing in the client library imports
it. Imported by tui.app and tui.cli (and a widget for the cursor rule).
"""
