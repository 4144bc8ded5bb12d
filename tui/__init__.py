"""penmail: a Textual terminal client for a Private Email Network (PEN) server."""
