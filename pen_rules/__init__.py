"""Rules that the terminal client (`tui/`) and the PEN's web pages (`pen_server/`) must apply
alike. Standard library only: it imports neither `tui` nor `pen_server` (nor Textual), so
both may import it without breaking "pen_server never imports tui" or "the client library
is free of Textual"."""
