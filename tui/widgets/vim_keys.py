"""The moving keys every list and text shares: the vim keys beside the arrows.

One place for them, so every list moves alike; each widget keeps ids of its own (the
``[keys]`` table of the settings file can change one list's keys without the others)."""

from __future__ import annotations

from textual.binding import Binding

ARROWS_AND_VIM = ("down,j", "up,k", "home,g", "end,G")
VIM_ONLY = ("j", "k", "g", "G")  # for widgets whose arrows Textual binds already


def moving_bindings(id_prefix: str, descriptions: tuple[str, str, str, str] = ("Next", "Previous", "First", "Last"),
                    *, actions: tuple[str, str, str, str] = ("cursor_down", "cursor_up", "first", "last"),
                    id_names: tuple[str, str, str, str] = ("down", "up", "first", "last"),
                    keys: tuple[str, str, str, str] = ARROWS_AND_VIM) -> list[Binding]:
    """Next, previous, first and last, hidden from the footer (F1 lists them), with the ids
    ``id_prefix + id_names[i]``."""
    return [Binding(key, action, description, show=False, id=f"{id_prefix}{name}")
            for key, action, description, name in zip(keys, actions, descriptions, id_names)]
