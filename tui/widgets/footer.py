"""Textual's Footer, recomposed once per change of the keys it shows.

Textual's Footer rebuilds all of its key widgets after *every* bindings signal (each focus
change, each screen-stack change), even when several come before one refresh and when the
keys shown stay the same: at start-up that was 11 rebuilds, about a third of the time to the
first mailbox frame. This one coalesces the signals into one pending rebuild, and skips it
when the keys, their descriptions and their enabled state are what is shown already."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pending = False
        self._shown: tuple | None = None

    def _keys(self) -> tuple:
        """What compose() would show: each shown binding's key, text and state."""
        return tuple((b.key, b.description, b.action, enabled, tooltip, self.app.get_key_display(b))
                     for (_, b, enabled, tooltip) in self.screen.active_bindings.values()
                     if b.show or b.action == "command_palette") + (self.compact, self.show_command_palette)

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._pending:
            self._pending = True
            self.call_after_refresh(self._rebuild)

    async def _rebuild(self) -> None:
        self._pending = False
        if not self.is_attached:
            return
        keys = self._keys()
        if keys != self._shown:
            self._shown = keys
            await self.recompose()
