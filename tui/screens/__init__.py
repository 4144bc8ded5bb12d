"""The full-screen UI's screens, one a file, and the typed messages they and the app exchange
(``messages``).

Textual code. A screen may import widgets and the client library; it tells the app what
happened with typed messages or ``self.notify``, never by calling the concrete app's methods.
Nothing outside the UI (tui.app, tui.cli, tui.screens, tui.widgets, tui.terminal) imports it.
"""
