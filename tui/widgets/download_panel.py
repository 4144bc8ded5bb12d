"""What a download is doing: which file, a progress bar, bytes, speed and time left (from
downloads.Progress), and at the end one sentence saying where the file landed or why
nothing was kept. Everything shown goes through SafeStatic; the bar is Textual's."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar

from tui.downloads import Progress
from tui.text.format import duration_left, human_size
from tui.widgets.safe_static import SafeStatic


def figures(p: Progress) -> str:
    """"1.5 MB of 6.0 MB, 3.2 MB/s, 2 seconds left"."""
    speed = f"{human_size(int(p.bytes_per_second))}/s" if p.bytes_per_second > 0 else "starting"
    return f"{human_size(p.done)} of {human_size(p.total)}, {speed}, {duration_left(p.seconds_left)}"


def heading(p: Progress) -> str:
    which = f" {p.file_number} of {p.file_count}" if p.file_count > 1 else ""
    return f"Saving{which}: {p.filename}  (c or escape stops; what arrived is kept)"


class DownloadPanel(Vertical):
    """Hidden until a download starts; keeps its last state (the outcome) until the next."""

    DEFAULT_CSS = """
    DownloadPanel { height: auto; }
    DownloadPanel > .download-line { height: auto; }
    DownloadPanel > Horizontal { height: 1; }
    DownloadPanel ProgressBar { width: 1fr; min-width: 16; }
    DownloadPanel ProgressBar Bar { width: 1fr; }
    DownloadPanel .download-figures { width: auto; max-width: 70%; height: 1; padding-left: 1; }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.running = False
        self.last: Progress | None = None

    def compose(self) -> ComposeResult:
        yield SafeStatic("", classes="download-line")
        with Horizontal():
            yield ProgressBar(total=1, show_eta=False, show_percentage=True, id="download-bar")
            yield SafeStatic("", classes="download-figures")

    def on_mount(self) -> None:
        self.display = False

    @property
    def bar(self) -> ProgressBar:
        return self.query_one("#download-bar", ProgressBar)

    def begin(self, filename: str, total: int, file_count: int = 1) -> None:
        """A download starts: the bar at zero, before the first byte (and any network)."""
        self.running = True
        self.last = None
        self.display = True
        self.show_progress(Progress(0, total, 0.0, None, filename, 1, file_count))

    def show_progress(self, p: Progress) -> None:
        self.last = p
        # An empty file is done at once; the bar never waits on a total of zero (it would spin).
        self.bar.update(total=max(p.total, 1), progress=p.done if p.total > 0 else 1)
        self.query_one(".download-line", SafeStatic).show(heading(p))
        self.query_one(".download-figures", SafeStatic).show(figures(p))

    def end(self, sentence: str) -> None:
        """The download is over: one sentence of what became of it."""
        self.running = False
        self.query_one(".download-line", SafeStatic).show(sentence)
        if self.last is not None:
            self.query_one(".download-figures", SafeStatic).show(f"{human_size(self.last.done)} of "
                                                                  f"{human_size(self.last.total)}")
