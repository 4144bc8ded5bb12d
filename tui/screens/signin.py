"""Sign-in: server address, e-mail, password and "remember me"; the server's sentence when
it fails. Works with the keyboard alone: tab moves, enter signs in, escape quits."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Input, Label

from tui.pen_client import PenError
from tui.screens.messages import SignedIn
from tui.signin.session import Session
from tui.widgets.footer import KeyFooter
from tui.widgets.safe_static import SafeStatic


class SignInScreen(Screen):


    AUTO_FOCUS = None
    BINDINGS = [
        Binding("ctrl+l", "sign_in", "Sign in", id="signin.submit"),
        Binding("escape", "app.quit", "Quit", id="signin.quit"),
        Binding("f1", "app.help", "Help", id="signin.help"),
    ]

    def __init__(self, server: str = "", email: str = "", ca_file=None, notice: str | None = None,
                 error: str | None = None, hint: str | None = None) -> None:
        """`hint`: a line under the title for where the password is known, e.g. the demo's."""
        super().__init__()
        self.server, self.email, self.ca_file = server, email, ca_file
        self.notice, self.error, self.hint = notice, error, hint

    def compose(self) -> ComposeResult:
        with Vertical(id="signin-box"):
            yield Label("Sign in to your PEN", id="signin-title")
            if self.hint:
                yield SafeStatic(self.hint, id="signin-hint")
            yield SafeStatic(self.error or "", id="signin-error")
            yield SafeStatic(self.notice or "", id="signin-notice")
            with Horizontal(classes="field"):
                yield Label("Server", classes="field-label")
                yield Input(self.server, placeholder="https://pen.example", id="server", select_on_focus=False,
                            compact=True)
            with Horizontal(classes="field"):
                yield Label("E-mail", classes="field-label")
                yield Input(self.email, placeholder="you@example.org", id="email", select_on_focus=False, compact=True)
            with Horizontal(classes="field"):
                yield Label("Password", classes="field-label")
                yield Input(password=True, id="password", compact=True)
            # Where it is remembered (the system keyring, else a private file) is said after sign-in.
            yield Checkbox("Remember me on this computer", True, id="remember", compact=True)
            yield Button("Sign in", variant="primary", id="submit", compact=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        for name in ("#signin-error", "#signin-notice"):
            status = self.query_one(name, SafeStatic)
            status.display = bool(self.error if name == "#signin-error" else self.notice)
        for field in ("server", "email", "password"):
            widget = self.query_one(f"#{field}", Input)
            if not widget.value:
                widget.focus()
                break
        else:
            self.query_one("#password", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        order = ["server", "email", "password"]
        empty = next((f for f in order if not self.query_one(f"#{f}", Input).value.strip()), None)
        if event.input.id == "password" or empty is None:
            self.action_sign_in()
        else:
            self.query_one(f"#{empty}", Input).focus()

    @on(Button.Pressed, "#submit")
    def _pressed(self) -> None:
        self.action_sign_in()

    def _say(self, text: str) -> None:
        status = self.query_one("#signin-error", SafeStatic)
        status.show(text)
        status.display = bool(text)

    def action_sign_in(self) -> None:
        server = self.query_one("#server", Input).value.strip()
        email = self.query_one("#email", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not server.startswith("https://"):
            self._say("The server address must start with https://.")
            self.query_one("#server", Input).focus()
            return
        if "@" not in email:
            self._say("Type your e-mail address, such as ann@example.org.")
            self.query_one("#email", Input).focus()
            return
        if not password:
            self._say("Type your password.")
            self.query_one("#password", Input).focus()
            return
        self._say("Signing in ...")
        self._sign_in(server, email, password, self.query_one("#remember", Checkbox).value)

    @work(exclusive=True, group="signin", exit_on_error=False)
    async def _sign_in(self, server: str, email: str, password: str, remember: bool) -> None:
        try:
            session = Session(server, email, self.ca_file, remember=remember)
            await session.login(password)
        except PenError as exc:
            self._say(exc.message)
            self.query_one("#password", Input).focus()
            return
        self.post_message(SignedIn(session))
