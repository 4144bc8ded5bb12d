"""The first frame: drawn at once, before any network call finishes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static


class StartingScreen(Screen):
    BINDINGS = [Binding("escape,q", "app.quit", "Quit", id="starting.quit")]

    def compose(self) -> ComposeResult:
        yield Static("penmail\n\nSigning in ...", id="starting")
        yield Footer()
