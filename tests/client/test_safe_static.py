"""SafeStatic.show: the same text again changes nothing (no new layout, no new frame); a
different text, or the same text after something else set the content, is shown."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tui.widgets.safe_static import SafeStatic


class _One(App):
    def compose(self) -> ComposeResult:
        yield SafeStatic("Signing in ...", id="status")


async def test_show_skips_only_the_text_already_shown() -> None:
    app = _One()
    async with app.run_test() as pilot:
        status = app.query_one("#status", SafeStatic)
        first = status.content
        status.show("Signing in ...")
        assert status.content is first  # the same text: not set again
        status.show("")
        await pilot.pause()
        assert str(status.content) == "" and status.content is not first
        status.update("[b]set by hand[/b]")  # not through show(): the next show() is not skipped
        status.show("")
        assert str(status.content) == ""
        status.show("[red]x")
        await pilot.pause()
        assert str(status.render()) == "[red]x"  # still data, never markup
