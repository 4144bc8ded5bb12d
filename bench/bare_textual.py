"""The anchor of bench/demo_start.py: a bare Textual app (one line of text, `q` quits),
started as `penmail demo` is, so that its time to a first frame is what any Textual
program pays on this machine at this moment."""

from textual.app import App, ComposeResult
from textual.widgets import Static

MARK = "bare-textual-ready"


class Bare(App):
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Static(MARK)


if __name__ == "__main__":
    Bare().run()
