"""Before sending, against the real PEN: no subject asks once (default No, back to Subject);
a sentence that names a field puts the cursor in that field."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import PASSWORD
from tests.tui_helpers import at_mailbox, config_for, rendered, wait_for
from tui.app import PenmailApp
from tui.screens.compose import ComposeScreen
from tui.screens.confirm import ConfirmScreen


@pytest.fixture
def app(pen, tmp_path, monkeypatch) -> PenmailApp:
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    return PenmailApp(config_for(pen, "cat@abc.example", tmp=tmp_path), env={"PENMAIL_PASSWORD": PASSWORD},
                      use_keyring=False)


def bobs_with_body(pen, text: str) -> int:
    with pen.as_user("bob") as c:
        return c.get("/messages", params={"q": f"body:{text}"}).json()["total"]


async def compose(pilot) -> ComposeScreen:
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app))
    await pilot.press("c")
    await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
    return app.screen


async def to_body(pilot) -> None:
    for _ in range(8):
        if pilot.app.focused.id == "compose-body":
            return
        await pilot.press("tab")
    raise AssertionError(f"tab did not reach the body: {pilot.app.focused}")


async def test_no_subject_asks_once_and_no_goes_back_to_the_subject(pen, app):
    tag = uuid.uuid4().hex[:10]
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await compose(pilot)
        await pilot.press(*"bob@abc.example")
        await to_body(pilot)
        await pilot.press(*f"text {tag}", "f9")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen) and "no subject" in rendered(app)[0])
        assert app.screen.question == "This message has no subject. Send it anyway?"
        await pilot.press("enter")  # the default: No
        await wait_for(pilot, lambda: app.screen is screen and app.focused is not None)
        assert app.focused.id == "subject"
        assert "type a subject" in str(screen.query_one("#compose-status").render())
        assert bobs_with_body(pen, tag) == 0
        await pilot.press("f9")  # asked again, once
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: screen not in app.screen_stack, timeout=30)
    assert bobs_with_body(pen, tag) == 1


async def test_no_subject_and_no_text_is_one_question(pen, app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await compose(pilot)
        await pilot.press(*"bob@abc.example", "f9")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen) and "no subject" in rendered(app)[0])
        assert app.screen.question == "This message has no subject and no text. Send it anyway?"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen and app.focused is not None and app.focused.id == "subject")


async def test_the_field_an_error_names_gets_the_cursor(pen, app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await compose(pilot)
        await pilot.press("tab", "tab", "tab", *"A subject")
        await to_body(pilot)
        await pilot.press(*"Some text", "f9")
        await wait_for(pilot, lambda: "Add at least one recipient" in str(screen.query_one("#compose-status").render()))
        assert app.focused.id == "to"
        await pilot.press(*"someone@", "tab", "tab")  # a wrong address in To, the cursor elsewhere
        await to_body(pilot)
        await pilot.press("f9")
        await wait_for(pilot, lambda: "Not sent: To:" in str(screen.query_one("#compose-status").render()))
        assert app.focused.id == "to"
