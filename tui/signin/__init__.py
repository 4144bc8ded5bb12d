"""Signing in: the session (a remembered refresh token, a password found without asking),
the keyring credentials, and the token file where no keyring works.

No Textual here: the sign-in screen and line mode both call it. May import the client library
(tui.pen_client, tui.config, tui.files); never tui.app, tui.screens, tui.widgets or the demo.
"""
