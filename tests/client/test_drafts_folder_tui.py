"""The Drafts folder beside Inbox, Sent, Archive and Trash: the drafts on disk of the
account signed in, with their count; enter resumes one, d deletes one after a one-key
question; quitting or signing out with compose open keeps the draft and says so; the
demo keeps its drafts from one start to the next."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tests.client import test_compose_tui
from tests.client.test_compose_tui import app_for
from tests.tui_helpers import at_mailbox, rendered, wait_for
from tui.drafts import Draft, DraftStore, account_key
from tui.screens.compose import ComposeScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.drafts import DraftsScreen
from tui.screens.signin import SignInScreen
from tui.widgets.message_list import MessageList

state = test_compose_tui.state  # the fixture: a state folder of the test's own


def store(state) -> DraftStore:
    return DraftStore(state / "state" / "drafts")


def status(app) -> str:
    return str(app.screen.query_one("#status").render())


def drafts_count(mailbox) -> str:
    """What the sidebar's Drafts row shows after its name: the number of drafts, or nothing."""
    row = str(mailbox.query_one("#folders").get_option("drafts").prompt).lstrip(">").split()
    assert row[:2] == ["5", "Drafts"], row
    return " ".join(row[2:])


async def mailbox_ready(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app) and app.session.client.user is not None
                   and app.screen.query_one(MessageList).loaded_once)
    return app.screen


async def test_the_drafts_folder_lists_resumes_and_deletes(pen, state):
    mine = account_key(pen.process.url, "ann@abc.example")
    older = Draft(to=["Bob Stone <bob@abc.example>"], subject="Rota swap", body="Can we swap?", account=mine)
    newer = Draft(to=["cat@abc.example"], cc=["bob@abc.example"], subject="Fire drill", body="Friday.",
                  account=mine)
    other = Draft(to=["ann@abc.example"], subject="Bob's own draft",
                  account=account_key(pen.process.url, "bob@abc.example"))
    for d in (older, newer, other):
        store(state).save(d)
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        # they are offered after sign-in, as before; escape leaves them for later
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen))
        await pilot.press("escape")
        mailbox = await mailbox_ready(pilot)
        messages = mailbox.query_one(MessageList)
        await wait_for(pilot, lambda: drafts_count(mailbox) == "2")
        await pilot.press("5")
        await wait_for(pilot, lambda: mailbox.folder == "drafts" and messages.total == 2
                       and messages.highlighted is not None and messages.highlighted.folder == "drafts")
        await wait_for(pilot, lambda: drafts_count(mailbox) == "2")
        screen = rendered(app)[0]
        assert "Fire drill" in screen and "Rota swap" in screen and "Bob's own draft" not in screen
        assert "to Bob Stone" in screen and "to cat@abc.example" in screen  # rows show the recipients
        assert "Drafts (2 drafts)" in screen
        assert messages.highlighted.id == newer.id  # the most recently saved first
        # Drafts' own footer and help: d deletes a draft; archive, search and the like are not there
        footer = rendered(app)[0].splitlines()[-1]
        assert "d Delete draft" in footer and "Archive" not in footer and "Search" not in footer, footer
        from tui.screens.help import describe_keys

        keys = describe_keys(app.screen)
        assert "Delete draft: d" in keys and "Archive:" not in keys and "Trash:" not in keys, keys
        # actions that mean nothing here say what does
        await pilot.press("a")
        await pilot.pause()
        assert status(app).startswith("Drafts are kept on this computer")
        # enter resumes the highlighted draft into compose
        await pilot.press("j")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
        compose = app.screen
        assert compose.draft.id == older.id and compose.query_one("#compose-body").text == "Can we swap?"
        await pilot.press("end", *" Thanks.")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is mailbox)
        assert store(state).load(older.id).body == "Can we swap? Thanks."
        # saved just now, it is the newest: first in the list
        await wait_for(pilot, lambda: messages.loaded_once and messages.total == 2
                       and messages.summary_at(0) is not None and messages.summary_at(0).id == older.id)
        await pilot.press("g")
        # d asks once (default No); y deletes the file
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen)
                       and "Delete the draft \u201cRota swap\u201d for good?" in rendered(app)[0])
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is mailbox and status(app) == "Nothing was deleted.")
        assert store(state).load(older.id) is not None
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: status(app) == "Deleted \u201cRota swap\u201d." and messages.total == 1)
        assert store(state).load(older.id) is None and store(state).load(other.id) is not None
        await wait_for(pilot, lambda: drafts_count(mailbox) == "1")
        # tagged drafts are deleted together
        await pilot.press("t")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen)
                       and "Delete the draft \u201cFire drill\u201d for good?" in rendered(app)[0])
        await pilot.press("y")
        await wait_for(pilot, lambda: status(app) == "Deleted \u201cFire drill\u201d." and messages.total == 0)
        assert [d.id for d in store(state).list()] == [other.id]
        await wait_for(pilot, lambda: drafts_count(mailbox) == "")


async def test_ctrl_q_mid_compose_keeps_the_draft_and_says_so(pen, state, capsys):
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        await mailbox_ready(pilot)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
        await pilot.press(*"bob@abc.example", "tab", "tab", "tab", *"Quit mid-sentence", "tab", *"I was wri")
        await pilot.press("ctrl+q")  # at once: before the autosave's 1.5 s
        await wait_for(pilot, lambda: app._exit)
    [draft] = store(state).list()
    assert (draft.to, draft.subject, draft.body) == (["bob@abc.example"], "Quit mid-sentence", "I was wri")
    said = " ".join(capsys.readouterr().err.split())  # printed once the screen is gone
    assert said == ("The draft \u201cQuit mid-sentence\u201d is kept in Drafts (key 5 in the mailbox); it is "
                    "offered again when you next sign in.")


async def test_sign_out_with_compose_open_keeps_the_draft_and_says_so(pen, state):
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        await mailbox_ready(pilot)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
        await pilot.press(*"cat@abc.example", "tab", "tab", "tab", *"Signed out mid-draft")
        app.action_sign_out()  # what L does on the mailbox (no key signs out from compose)
        await wait_for(pilot, lambda: "Sign out? The draft you are writing is kept" in rendered(app)[0])
        await pilot.press("y")  # a draft is open: asked first
        await wait_for(pilot, lambda: isinstance(app.screen, SignInScreen) and "You are signed out" in rendered(app)[0])
        notice = str(app.screen.query_one("#signin-notice").render())
        assert notice == ("You are signed out; the remembered sign-in was removed. The draft \u201cSigned out "
                          "mid-draft\u201d is kept in Drafts (key 5 in the mailbox); it is offered again when you "
                          "next sign in.")
    [draft] = store(state).list()
    assert draft.subject == "Signed out mid-draft" and draft.to == ["cat@abc.example"]


def test_the_demo_keeps_its_drafts_from_one_start_to_the_next(tmp_path, monkeypatch):
    """`penmail demo` twice with the prepared data: a draft written in the first is the
    demo user's in the second, though its PEN runs on another port."""
    import tui.cli
    import tui.demo
    import tui.demo.prepared

    monkeypatch.setenv("PENMAIL_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setattr(tui.demo.prepared, "cache_root", lambda: tmp_path / "cache")
    email = "dana@riverside.example"
    seen: list[tuple[str, list[str]]] = []

    class Stack:
        def __init__(self, port: int) -> None:
            self.root = tmp_path / f"run-{port}"
            self.server, self.email, self.ca_file, self.password = f"https://127.0.0.1:{port}", email, None, "pw"

        def guest_link(self) -> None:
            return None

        def wait_ready(self) -> None:
            return None

    def run_tui(config, *, env=None, use_keyring=True, **more):
        drafts = DraftStore(Path(os.environ["PENMAIL_STATE_DIR"]) / "drafts")
        mine = account_key(config.server, config.email)
        seen.append((os.environ["PENMAIL_STATE_DIR"], [d.subject for d in drafts.list(account=mine)]))
        if not seen[:-1]:  # the first start: the person writes a draft
            drafts.save(Draft(to=["rosa@riverside.example"], subject="Written in the first demo", account=mine))
        return 0

    ports = iter([40001, 40002])
    monkeypatch.setattr(tui.cli, "run_tui", run_tui)
    monkeypatch.setattr(tui.demo, "run_demo", lambda launch, cache_dir=None: launch(Stack(next(ports))))
    assert tui.cli.cmd_demo(argparse.Namespace(fresh=False)) == 0
    assert tui.cli.cmd_demo(argparse.Namespace(fresh=False)) == 0
    assert seen == [(str(tmp_path / "cache" / ".state"), []),
                    (str(tmp_path / "cache" / ".state"), ["Written in the first demo"])]
    # --fresh: a state folder of the run's own, as before
    monkeypatch.setattr(tui.demo, "run_demo", lambda launch, cache_dir=None: launch(Stack(40003)))
    assert tui.cli.cmd_demo(argparse.Namespace(fresh=True)) == 0
    assert seen[-1] == (str(tmp_path / "run-40003" / "state"), [])


async def test_the_title_counts_an_empty_folder_after_a_full_one(pen, send, state):
    """From a folder with messages to one with none: the title says none, not the count of
    the folder before (the demo showed "Drafts (69 drafts)" over "(no messages here)")."""
    send("bob", ["cat"], subject="Something in Cat's inbox")
    app = app_for(pen, state, who="cat@abc.example")
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox = await mailbox_ready(pilot)
        messages = mailbox.query_one(MessageList)
        await wait_for(pilot, lambda: messages.total > 0)
        await pilot.press("5")
        await wait_for(pilot, lambda: mailbox.folder == "drafts" and "Drafts (0 drafts)" in rendered(app)[0])
