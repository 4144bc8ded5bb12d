"""The compose screen's address completion asks the real PEN (GET /addresses) besides the
local book: people who are only in the inbox are offered, with their stored names and case."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import PASSWORD
from tests.tui_helpers import at_mailbox, config_for, wait_for
from tui.app import PenmailApp
from tui.compose import AddressBook
from tui.screens.compose import ComposeScreen


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PENMAIL_PASSWORD", raising=False)
    return tmp_path


def cat_app(pen, state_dir) -> PenmailApp:
    return PenmailApp(config_for(pen, "cat@abc.example", tmp=state_dir), env={"PENMAIL_PASSWORD": PASSWORD},
                      use_keyring=False)


async def compose_to(pilot):
    """Cat's compose screen, open from the mailbox by its key: its To field."""
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app))
    await pilot.press("c")
    await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
    return app.screen.query_one("#to")


async def test_completion_offers_people_only_in_the_inbox_in_their_stored_case(pen, send, state_dir):
    tag = uuid.uuid4().hex[:8]
    omar, linda = f"omar.{tag}@elsewhere.example", f"lp.{tag}@elsewhere.example"
    # Cat has never written to either: they are on a message in her inbox.
    send("ann", ["cat"], cc=[{"email": omar, "name": "Omar Haddad"}, {"email": linda, "name": "Linda Park"}],
         subject=f"Rota {tag}")
    book = state_dir / "state" / "addresses.json"
    app = cat_app(pen, state_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        to = await compose_to(pilot)
        assert app.focused is to and AddressBook(book).complete("oma") == []  # not in the local book
        await pilot.press(*"oma")
        await wait_for(pilot, lambda: to._suggestion.startswith("Omar Haddad <omar."))
        await pilot.press("ctrl+u", *f"omar haddad <omar.{tag}")
        await wait_for(pilot, lambda: to._suggestion == f"Omar Haddad <{omar}>")
        await pilot.press("right")  # taken in the stored case, not as typed
        assert to.value == f"Omar Haddad <{omar}>"
        await pilot.press(*", linda park <lp.")
        await wait_for(pilot, lambda: to._suggestion.startswith(f"Omar Haddad <{omar}>, Linda Park <lp."))
        await pilot.press("ctrl+u", *f"linda park <lp.{tag}")
        await wait_for(pilot, lambda: to._suggestion == f"Linda Park <{linda}>")
        await pilot.press("right")
        assert to.value == f"Linda Park <{linda}>"
        # The local book still offers whom Cat wrote to before, beside the PEN's people.
        AddressBook(book).add(f"Zed Known <zed.{tag}@x.example>")
        app.screen.book = AddressBook(book)
        await pilot.press("ctrl+u", *"zed kn")
        await wait_for(pilot, lambda: to._suggestion == f"Zed Known <zed.{tag}@x.example>")


async def test_typing_fast_asks_the_pen_once(pen, state_dir, monkeypatch):
    """Keys closer together than the pause ask once, for the last value; no key waits for it."""
    from tui.pen_client import PenClient

    asked: list[str] = []
    real = PenClient.addresses

    async def counting(self, prefix: str, limit: int = 10):
        asked.append(prefix)
        return await real(self, prefix, limit)

    monkeypatch.setattr(PenClient, "addresses", counting)
    app = cat_app(pen, state_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        to = await compose_to(pilot)
        # Six changes in one turn of the loop. "bob st", not "bob": other tests add members to
        # the shared PEN whose names begin with Bob ("Bob Export"), and they may come first.
        for key in "bob st":
            to.insert_text_at_cursor(key)
        await wait_for(pilot, lambda: to._suggestion == "Bob Stone <bob@abc.example>")
        assert asked == ["bob st"]


async def test_the_suggester_falls_back_to_the_book_and_asks_again_after_no_answer(tmp_path, monkeypatch):
    """The suggester alone, with the screen's lookup replaced by one that first has no
    answer (as the screen's is when the PEN cannot be reached), then has one."""
    from tui.pen_client import Address
    from tui.widgets import address_field
    from tui.widgets.address_field import AddressSuggester

    monkeypatch.setattr(address_field, "DEBOUNCE_SECONDS", 0)
    book = AddressBook(tmp_path / "addresses.json")
    book.add("olga stone <olga@x.example>")
    answers: list = [None, [Address("omar@y.example", "Omar Haddad")]]
    asked: list[str] = []

    async def lookup(prefix: str):
        asked.append(prefix)
        return answers.pop(0) if answers else [Address("omar@y.example", "Omar Haddad")]

    suggester = AddressSuggester(lambda: book, lookup)
    assert await suggester.get_suggestion("o") == "olga stone <olga@x.example>"  # no answer: the book
    assert await suggester.get_suggestion("bob@x.example, om") == "bob@x.example, Omar Haddad <omar@y.example>"
    assert await suggester.get_suggestion("bob@x.example, om") == "bob@x.example, Omar Haddad <omar@y.example>"
    assert asked == ["o", "om"]  # "om" answered once is kept; "o" had no answer and would be asked again
    assert await suggester.get_suggestion("o") is not None and asked == ["o", "om", "o"]
