"""Writing a message, beyond tui.compose (its text, recipients and checks): the files of a
message and their uploads (uploads), and sending a draft (sender), for the compose screen and
line mode alike.

No Textual here. May import the client library (tui.pen_client, tui.drafts, tui.text,
tui.safe_text); never tui.app, tui.screens, tui.widgets or the demo.
"""
