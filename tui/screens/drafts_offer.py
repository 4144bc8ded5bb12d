"""After sign-in, the drafts a crash or an earlier session left on disk are looked for (in a
thread) and offered back. The drafts screen (tui/screens/drafts.py) is imported only when
there are some: this runs right after the first page is drawn, when keys may come."""

from __future__ import annotations

from textual.app import App

from tui.drafts import Draft, DraftStore, account_key
from tui.signin.session import Session


def session_account(session: Session) -> str | None:
    """The account_key of a signed-in session (the e-mail as the PEN knows it), or None."""
    user = session.client.user
    server = session.client.server or session.server
    email = user.email if user is not None else session.email
    return account_key(server, email) if server and email else None


def offer_saved_drafts(app: App, session: Session) -> None:
    """After sign-in: if the signed-in account has drafts on disk, offer them (the folder is
    read in a thread).  Drafts of other accounts stay on disk, unseen; drafts written before
    drafts had an account are offered to whichever account signs in."""
    account = session_account(session)
    if account is None:
        return  # nobody signed in: no draft can be told apart, so none is offered

    def look() -> None:
        store = DraftStore()
        drafts = store.list(account=account)
        if drafts:
            app.call_from_thread(_offer, app, store, drafts)

    app.run_worker(look, thread=True, group="drafts-offer", exit_on_error=False)


def _offer(app: App, store: DraftStore, drafts: list[Draft]):
    from tui.screens.drafts import DraftsScreen  # on the event loop, not in the thread

    return app.push_screen(DraftsScreen(store, drafts))
