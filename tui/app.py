"""penmail's shell: picks the first screen, owns the signed-in session and the event
stream, and routes between screens. Screens live in tui/screens/, one a file."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from rich.text import Text
from textual import events, on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.geometry import Offset
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.theme import Theme
from textual.worker import Worker, WorkerState

from tui.config import Config, ConfigError
from tui.notices import NoticeLog
from tui.pen_client import NotSignedIn, PenError, Summary
from tui.safe_text import one_line
from tui.screens.mailbox import MailboxScreen
from tui.screens.messages import (
    NOTICE_SECONDS,
    ComposeRequested,
    DraftResumeRequested,
    EventsWanted,
    MessageOpenRequested,
    NotificationsRequested,
    PenEvent,
    SignedIn,
    SummaryChanged,
)
from tui.signin.session import Session, open_session, sign_in_quietly
from tui.terminal.cursor import terminal_cursor
from tui.terminal.key_gate import KeyGate
from tui.widgets.message_list import MessageList

# The screens that the first mailbox frame does not need are imported when first shown.

HIGH_CONTRAST = Theme(name="high-contrast", primary="#ffff00", secondary="#00ffff", accent="#ffff00",
                      foreground="#ffffff", background="#000000", surface="#000000", panel="#000000",
                      success="#00ff00", warning="#ffff00", error="#ff5555", dark=True)

# Older names of Textual's themes: "textual-ansi" (the terminal's own palette) is "ansi-dark" now.
THEME_ALIASES = {"textual-ansi": "ansi-dark", "textual-ansi-light": "ansi-light"}


def binding_ids() -> set[str]:
    """Every action id a ``[keys]`` table can name: the ids of the bindings of penmail's app,
    screens and widgets (found by walking tui/screens/ and tui/widgets/)."""
    import importlib
    import inspect
    import pkgutil

    from textual.binding import Binding
    from textual.dom import DOMNode

    import tui.screens
    import tui.widgets

    modules = [sys.modules[__name__]]
    for package in (tui.screens, tui.widgets):
        modules += [
            importlib.import_module(f"{package.__name__}.{m.name}") for m in pkgutil.iter_modules(package.__path__)
        ]
    ids: set[str] = set()
    for module in modules:
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, DOMNode):
                for klass in cls.__mro__:
                    ids.update(b.id for b in vars(klass).get("BINDINGS", ()) if isinstance(b, Binding) and b.id)
    return ids


def check_key_ids(config: Config) -> None:
    """ConfigError (one sentence naming the id and the file) when ``[keys]`` names an action
    id that no binding has: a typo would otherwise silently do nothing."""
    if not config.keys:
        return
    known = binding_ids()
    unknown = [action for action in config.keys if action not in known]
    if unknown:
        where = config.path or "the settings file"
        raise ConfigError(
            f"In {where}, keys has {unknown[0]!r}, which is not an action id; F1 shows each "
            f"screen's ids, and docs/keys.md lists them all."
        )


def _plain(markup: str) -> str:
    """A notice written in Textual's markup (Textual's own notices), as the words it shows."""
    from textual.content import Content

    try:
        return Content.from_markup(markup).plain
    except Exception:  # not valid markup: shown as it is
        return markup


class PenmailApp(App):
    CSS_PATH = Path(__file__).parent / "app.tcss"
    TITLE = "penmail"
    ENABLE_COMMAND_PALETTE = True
    # On every screen; a field takes N as a letter (the palette and F1 still offer it there).
    BINDINGS = [Binding("N", "notices", "Notices said so far", show=False, id="app.notices"),
                # Only while `penmail demo` runs (check_action): the link it printed before the
                # full screen covered it.
                Binding("ctrl+g", "demo_link", "Show the demo's guest link", show=False, id="app.demo_link")]

    def __init__(
        self,
        config: Config,
        *,
        session: Session | None = None,
        env: Mapping[str, str] | None = None,
        use_keyring: bool = True,
        open_message_id: str | None = None,
        sign_in_hint: str | None = None,
        demo_link: str | None = None,
        wait_for_server: Callable[[], object] | None = None,
    ):
        super().__init__()
        self.config = config
        self.sign_in_hint = sign_in_hint  # shown on every sign-in screen (the demo's password)
        self.demo_link = demo_link  # the demo's sentence with a guest's link and the CA (ctrl+g)
        # The demo's server, still starting at the first frame: the quiet sign-in waits for it
        # (in a thread); when it raises, the app ends and the demo says why in one sentence.
        self.wait_for_server = wait_for_server
        self.session = session
        self._given_session = session  # its caller's to close
        self.use_keyring = use_keyring
        self.open_message_id = open_message_id  # `penmail open URL`: straight to that message
        self._events_started = False
        self._signing_in: Session | None = None  # the quiet sign-in behind the first frame
        self.env = {} if env is None else env  # the command's (tui.config.environment); the app reads none
        self.key_gate = KeyGate(self, self._key_arrived)  # no key lost nor misplaced, however fast
        self.notices = NoticeLog()  # every toast, to be read again with N
        if not config.animations:
            self.animation_level = "none"

    # ------------------------------------------------------------ keys, one after the other

    async def on_event(self, event: events.Event) -> None:
        if KeyGate.takes(event):
            await self.key_gate.arrived(event)
        else:
            await super().on_event(event)

    async def _key_arrived(self, event: events.Event) -> None:
        await super().on_event(event)

    def call_later(self, callback, *args, **kwargs) -> bool:
        # Counted: a key is not done while what it queued here (a focus change) is to come.
        self.key_gate.deferred += 1
        return super().call_later(callback, *args, **kwargs)

    # ------------------------------------------------------------ start-up

    def on_mount(self) -> None:
        if self.demo_link:  # there to read again with N, never gone with the terminal's scrollback
            self.notices.add(self.demo_link, title="Demo")
        self.register_theme(HIGH_CONTRAST)
        theme = THEME_ALIASES.get(self.config.theme, self.config.theme)
        if theme in self.available_themes:
            self.theme = theme
        if self.config.keys:
            self.set_keymap(self.config.keys)
        if self.session is not None and self.session.client.signed_in:
            self.signed_in(self.session)
        elif not (self.config.server and self.config.email):
            self.push_screen(self.sign_in_screen())
        else:
            self._start_quietly()

    async def on_unmount(self) -> None:
        """However the app ends (quit, an error, a test's end), the connections of the
        sessions it made close: a PEN that stops meanwhile waits on no idle one of ours."""
        for session in {id(s): s for s in (self.session, self._signing_in) if s is not None}.values():
            if session is not self._given_session:
                await session.client.aclose()

    def sign_in_screen(self, *, notice: str | None = None, error: str | None = None) -> Screen:
        from tui.screens.signin import SignInScreen

        return SignInScreen(
            self.config.server or "", self.config.email or "", self.config.ca_file, notice=notice, error=error,
            hint=self.sign_in_hint)

    def _start_quietly(self) -> None:
        """The first frame comes before any network: the mailbox, empty and saying so, while
        a quiet sign-in (keyring, password_command, PENMAIL_PASSWORD) runs behind it; when
        that finds no way in, the sign-in screen takes its place."""
        try:
            session = open_session(self.config, self.use_keyring)
        except PenError as exc:
            self.push_screen(self.sign_in_screen(error=exc.message))
            return
        self.push_screen(MailboxScreen(session.client, keys=self.key_gate, signing_in_as=self.config.email))
        self._signing_in = session
        self._sign_in_quietly(session)

    @work(exclusive=True, group="signin", exit_on_error=False)
    async def _sign_in_quietly(self, session: Session) -> None:
        if self.wait_for_server is not None:
            try:
                await asyncio.to_thread(self.wait_for_server)
            except Exception:
                self.exit(return_code=1)  # run_demo says why after the full screen
                return
        session, outcome = await sign_in_quietly(self.config, self.env, self.use_keyring, session=session)
        self._signing_in = None
        if outcome.client is not None:
            self.signed_in(session)
            return
        self.switch_screen(self.sign_in_screen(notice=outcome.notice, error=outcome.error))
        if session is not None:
            await session.client.aclose()  # the sign-in screen makes its own

    def signed_in(self, session: Session) -> None:
        self.session = session
        self._events_started = False
        waiting = self.mailbox()
        if waiting is not None and waiting.client is session.client and waiting.signing_in_as is not None:
            waiting.start()  # the mailbox that was the first frame
        elif len(self.screen_stack) > 1:
            self.switch_screen(MailboxScreen(session.client, keys=self.key_gate))
        else:
            self.push_screen(MailboxScreen(session.client, keys=self.key_gate))
        if self.open_message_id:
            self._open_by_id(self.open_message_id)
            self.open_message_id = None
        if session.store.problem:
            self.toast(session.store.problem, title="Keyring", timeout=10)

    def on_descendant_focus(self, event) -> None:
        # A blinking cursor repaints forever and distracts; off unless animations are on.
        if not self.config.animations and hasattr(event.widget, "cursor_blink"):
            event.widget.cursor_blink = False

    # The terminal cursor, where each draw puts it: on the focused widget's highlighted row or
    # text cursor, found by one rule (tui/terminal/cursor.py) after the layout of that draw,
    # so never left on a line that moved, a screen below, or a field not yet laid out. What
    # widgets set (Textual's fields set it) is kept for a focused widget with no place of its own.

    @property
    def cursor_position(self) -> Offset:
        try:
            focused = self.focused
        except Exception:  # no screen yet, or no longer
            focused = None
        spot = terminal_cursor(focused)
        return spot if spot is not None else self._cursor_fallback

    @cursor_position.setter
    def cursor_position(self, value: Offset) -> None:
        self._cursor_fallback = value

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """A failure nobody expected still reaches the person, as one sentence."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.toast(
                f"Something went wrong ({type(error).__name__}: {error}); try again.",
                title="Error",
                severity="error",
                timeout=15,
            )

    def toast(self, text: str, *, title: str = "", severity: SeverityLevel = "information",
              timeout: float = NOTICE_SECONDS) -> None:
        """A notification whose text may come from the server: cleaned, never markup."""
        self.notify(text, title=title, severity=severity, timeout=timeout, markup=False)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notice, penmail's and Textual's own, also goes to the history N opens. With
        markup=False (how screens say what may come from the server: ``self.notify(text,
        markup=False, ...)``), the text is untrusted: cleaned to one line, never markup."""
        if not markup:
            message, title = one_line(message, 500), one_line(title, 80)
        self.notices.add(_plain(message) if markup else message, title=title, severity=severity)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_link":
            return bool(self.demo_link)
        return True

    def action_demo_link(self) -> None:
        """The demo's guest link again, and on the clipboard where the terminal takes OSC 52."""
        if not self.demo_link:
            return
        link = next((word for word in self.demo_link.split() if word.startswith("https://")), "")
        if link:
            self.copy_to_clipboard(link)
        self.toast(f"{self.demo_link} The link is copied to the clipboard where the terminal allows it.",
                   title="Demo", timeout=30)

    def action_notices(self) -> None:
        from tui.screens.notices import NoticesScreen

        if not isinstance(self.screen, NoticesScreen):
            self.push_screen(NoticesScreen(self.notices.newest_first()))

    # ------------------------------------------------------------ routing: what screens ask for

    @on(SignedIn)
    def _signed_in(self, event: SignedIn) -> None:
        self.signed_in(event.session)

    @on(EventsWanted)
    def _events_wanted(self) -> None:
        self.start_events()

    @on(MessageOpenRequested)
    def _open_requested(self, event: MessageOpenRequested) -> None:
        self.open_message(event.summary, instead_of=event.instead_of)

    @on(SummaryChanged)
    def _summary_changed(self, event: SummaryChanged) -> None:
        self.summary_changed(event.summary, event.moved)
        mailbox = self.mailbox()
        if event.moved and event.before and mailbox is not None:
            mailbox.remember_move(event.summary, event.before)

    @on(ComposeRequested)
    def _compose_requested(self, event: ComposeRequested) -> None:
        self.start_compose(event.kind, event.message)

    @on(DraftResumeRequested)
    def _resume_requested(self, event: DraftResumeRequested) -> None:
        self.resume_draft(event.draft)

    @on(NotificationsRequested)
    def _notifications_requested(self, event: NotificationsRequested) -> None:
        self.show_notifications(event.message_id, event.subject)

    def mailbox(self) -> MailboxScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MailboxScreen):
                return screen
        return None

    def open_message(self, summary: Summary, instead_of: Screen | None = None) -> None:
        from tui.screens.reader import ReaderScreen

        reader = ReaderScreen(self.session.client, summary, keys=self.key_gate,
                              download_dir=self.config.download_dir)
        if instead_of is not None and instead_of is self.screen:
            self.switch_screen(reader)
        else:
            self.push_screen(reader)

    @work(group="open-by-id", exit_on_error=False)
    async def _open_by_id(self, message_id: str) -> None:
        try:
            message = await self.session.client.get_message(message_id)
        except PenError as exc:
            self.toast(exc.message, title="Open", severity="error")
            return
        self.open_message(message)

    def start_compose(self, kind: str = "new", message=None) -> None:
        """New message, reply, reply-all or forward: the compose screen with a new draft.
        (Not `compose`: that name is Textual's hook for an app's own widgets.)"""
        from tui.screens.compose import ComposeScreen

        if self.session is None:
            self.toast("Sign in first; then you can write a message.")
            return
        self.push_screen(ComposeScreen.start(self.session.client, kind, message))

    def action_compose(self, kind: str = "new") -> None:
        """What the keys bound to "app.compose('new')" run."""
        self.start_compose(kind)

    def resume_draft(self, draft) -> None:
        from tui.screens.compose import ComposeScreen

        self.push_screen(ComposeScreen(self.session.client, draft))

    def show_notifications(self, message_id: str, subject: str = "") -> None:
        """Each recipient's notification, live from the event stream."""
        from tui.screens.notifications import NotificationsScreen

        self.push_screen(NotificationsScreen(self.session.client, message_id, subject))

    def summary_changed(self, summary: Summary, moved: bool = False) -> None:
        mailbox = self.mailbox()
        if mailbox is not None:
            if moved:
                mailbox.reload()
            else:
                mailbox.query_one("#messages", MessageList).replace(summary)
                mailbox.refresh_folder_counts()

    def start_events(self) -> None:
        """Once the first page is drawn (or failed), and not before, so as not to compete with
        it: follow the event stream (it opens from the first lists' Pen-Event-Id, so the PEN
        replays what came between and nothing is fetched again), and offer the drafts a crash
        or an earlier session left behind."""
        if self.session is not None and not self._events_started:
            self._events_started = True
            self.call_after_refresh(self._after_first_page)

    def _after_first_page(self) -> None:
        from tui.screens.drafts_offer import offer_saved_drafts

        self._follow_events()
        if self.session is not None:
            offer_saved_drafts(self, self.session)

    @work(exclusive=True, group="events", exit_on_error=False)
    async def _follow_events(self) -> None:
        """New mail and delivery news without a manual refresh; reconnects with backoff."""
        delay = 1.0
        client = self.session.client
        while client is self.session.client:
            try:
                async for event in client.events():
                    delay = 1.0
                    self.dispatch_event(event)
            except NotSignedIn:
                return
            except PenError:
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    def dispatch_event(self, event) -> None:
        # A stream that replays what was missed (since its last event, or since the lists it
        # opened after) needs no fetch; one with nothing to resume from, or a PEN that could not
        # replay (resync), does.
        if (event.kind == "stream.open" and not event.caught_up) or event.kind == "resync":
            mailbox = self.mailbox()
            if mailbox is not None:
                mailbox.reload(keep_cursor=True)
        if event.kind == "message.new":
            mailbox = self.mailbox()
            if mailbox is not None:
                mailbox.message_arrived(str(event.data.get("folder", "")))
        for screen in self.screen_stack:
            screen.post_message(PenEvent(event))

    # ------------------------------------------------------------ actions

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen, describe_keys

        screen = self.screen
        title = one_line(type(screen).__name__.replace("Screen", "")) or "penmail"
        self.push_screen(HelpScreen(title, describe_keys(screen)))

    def action_sign_out(self) -> None:
        from tui.screens.compose import ComposeScreen
        from tui.screens.confirm import ConfirmScreen

        if not any(isinstance(screen, ComposeScreen) for screen in self.screen_stack):
            self._sign_out()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._sign_out()

        self.push_screen(ConfirmScreen("Sign out? The draft you are writing is kept, and offered again at the "
                                       "next sign-in.", yes="Yes, sign out"), answered)

    @work(exclusive=True, group="signin", exit_on_error=False)
    async def _sign_out(self) -> None:
        # Also while the quiet sign-in runs (this worker cancels it): what is stored goes.
        session = self.session or self._signing_in
        self._signing_in = None
        if session is not None:
            try:
                await session.sign_out()
            except PenError as exc:
                self.toast(exc.message, title="Sign-out", severity="warning")
        kept = self.keep_open_drafts()
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(self.sign_in_screen(
            notice=" ".join(["You are signed out; the remembered sign-in was removed.", *kept])))

    async def action_quit(self) -> None:
        # A token the server just rotated must reach the keyring first (also one from a quiet
        # sign-in still running): the old one is dead, and using it again ends the sign-in.
        kept = self.keep_open_drafts()
        session = self.session or self._signing_in
        if session is not None:
            await session.settle()
            await session.client.aclose()
        # Said on the terminal once the screen is gone (plain text: a subject is no markup).
        self.exit(message=Text(" ".join(kept)) if kept else None)

    def keep_open_drafts(self) -> list[str]:
        """Every open compose screen writes its draft now; the sentences that say so."""
        kept = []
        for screen in self.screen_stack:
            keep = getattr(screen, "keep_for_later", None)
            sentence = keep() if keep is not None else None
            if sentence:
                kept.append(sentence)
        return kept

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every key of the screen is a palette entry too."""
        yield from super().get_system_commands(screen)
        seen = set()
        for active in screen.active_bindings.values():
            b = active.binding
            if not b.description or b.action in seen or b.action == "command_palette":
                continue
            seen.add(b.action)
            keys = self.get_key_display(b)
            node = active.node

            def run(action=b.action, node=node):
                self.call_later(self.run_action, action, node)

            yield SystemCommand(b.description, f"Key: {keys}", run)
