"""`penmail demo`: a whole Private Email Network on this machine, filled with a clinic's mail.

`DemoStack` makes a temporary folder, starts an SMTP sink that keeps every notification,
creates "Riverside Clinic" (its own local CA, two membership packages with different
disclaimers, doctors, nurses, reception, billing and an administrator), runs the real
`pen-server` on a free loopback port and seeds it through the real HTTPS API: a few hundred
messages in threads, HTML and plain bodies, attachments from a few KB to 50 MB, outside
patients and partners who become guests (two of them register through the link in their
notification e-mail and reply), and a lived-in mailbox for the demo user (inbox, archive,
trash, read and unread).

The API stamps every message with the time it was sent, so after seeding the demo moves
the messages' dates back over the last six weeks in the server's database (the only write
that does not go through the API), so that the mailbox reads like weeks of work.

With `cache_dir` (what `penmail demo` passes), the seeded data folder is kept there and
later stacks start from a copy of it in a second or two (tui/demo/prepared.py).

`stop()` ends everything (the server with SIGTERM, the sink, the folder); it is registered
with atexit, runs on SIGTERM and SIGINT too, and is safe to call twice.

This package is the only client code that imports `pen_server` and `pen_devstack` (a contract
in pyproject.toml says so), and only when a stack starts,
so `penmail` works without the server's packages until someone asks for the demo. No
Textual here: `run_demo(launch)` gets the TUI as a function.

The package: this module (the stack and `run_demo`), ``data`` (the clinic's people, files and
messages) and ``prepared`` (the seeded data kept and reused). May import ``pen_server`` and
``pen_devstack`` (deferred, when a stack starts) and the client library; never Textual.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.demo import prepared as demo_prepared
from tui.demo import shipped as demo_shipped
from tui.demo.data import (
    CONCURRENCY,
    DEFAULT_BIG_MB,
    DEFAULT_MESSAGES,
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DISCLAIMERS,
    DOMAIN,
    FOOTER,
    GUEST_PASSWORD,
    MEMBERS,
    PEN_NAME,
    PEOPLE,
    REGISTERING_GUESTS,
    STOP_SECONDS,
    DemoError,
    FileSpec,
    Planner,
    Step,
    Thread,
)

if TYPE_CHECKING:
    from pen_devstack import PenProcess, SmtpSink


def _first(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def guest_link_sentence(stack: DemoStack) -> str | None:
    """Where a guest's path starts: printed before the full screen, then in the TUI (ctrl+g,
    the notice history, the sign-in screen's hint)."""
    link = stack.guest_link()
    if not link:
        return None
    return (f"A guest's link, to try in any browser: {link} (the PEN's CA certificate is {stack.ca_file}; trust "
            f"it, or accept the browser's warning).")


def sign_in_hint(email: str = DEMO_EMAIL, password: str = DEMO_PASSWORD) -> str:
    """What the sign-in screen says while the demo runs (the password was printed before the
    full screen, where it is gone after a sign-out)."""
    return (f"Demo PEN: sign in as {email} with the password {password} (every demo member "
            f"has it; a demo guest's is {GUEST_PASSWORD}).")


class DemoStack:
    """A PEN with a clinic's mail, on this machine, for as long as the demo runs."""

    def __init__(self, *, messages: int = DEFAULT_MESSAGES, big_attachment_mb: float = DEFAULT_BIG_MB,
                 seed: int = 2026, progress: Callable[[str], None] | None = None, handle_signals: bool = True,
                 backdate: bool = True, cache_dir: Path | None = None):
        self.messages = messages
        # Where prepared data is kept and reused (tui.demo.prepared); None seeds every time.
        self.cache_dir = cache_dir
        self.prepared_from: Path | None = None  # the cache entry this stack was copied from
        self.big_attachment_bytes = max(1024, int(big_attachment_mb * (1 << 20)))
        self.seed = seed
        self.progress = progress or (lambda line: None)
        self.handle_signals = handle_signals
        self.backdate = backdate
        self.email = DEMO_EMAIL
        self.password = DEMO_PASSWORD
        self.pen_name = PEN_NAME
        self.root: Path | None = None
        self.data_dir: Path | None = None
        self.port: int | None = None
        self.smtp: SmtpSink | None = None
        self.process: PenProcess | None = None
        self.seed_stats: dict[str, Any] = {}
        self.guests: dict[str, str] = {}  # e-mail -> password, of the guests that registered
        self._guest_link_path: str | None = None  # from a prepared entry
        self._started = self._stopped = False
        self._stop_lock = threading.Lock()
        self._old_handlers: dict[int, Any] = {}
        self._server_thread: threading.Thread | None = None
        self.now: datetime | None = None  # the seeding's "now" (the data set's build fixes it)
        self.shipped = False  # started from the data set shipped in the package (tui/demo/shipped.py)
        self._blob_maker: Any = None  # the helper process that makes the attachments' files
        self._when_ready: Callable[[], Any] | None = None
        self._ready_lock = threading.Lock()
        self._failure: list[BaseException] = []
        self._started_at = 0.0
        self.failure: DemoError | None = None  # the server did not start (see wait_ready)

    # ------------------------------------------------------------ properties

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        return str(self.data_dir / "tls" / "ca.pem")

    def __enter__(self) -> DemoStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ start

    def start(self, wait: bool = True) -> DemoStack:
        """Make the PEN and start its server. With `wait=False`, a start from prepared data
        returns while the server process is still starting (the TUI's first frame need not
        wait for it): `wait_ready()` waits, and says in one sentence when it did not start."""
        if self._stopped:
            raise DemoError("This demo stack has been stopped; start a new one.")
        if self._started:
            return self
        self._started = True
        try:
            try:
                import pen_devstack as devstack
            except ImportError as exc:
                raise DemoError(f"The demo needs the server's packages ({exc.name} is missing); install them "
                                f"with: pip install 'penmail[demo]'.") from None
            remove_left_behind()
            self.root = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
            (self.root / MARKER).write_text(str(os.getpid()), encoding="ascii")
            atexit.register(self.stop)
            self._install_signal_handlers()
            self.data_dir = self.root / "pen"
            self.port = devstack.free_port()
            self.progress(f"Starting a demo PEN on {self.server} ...")
            started = time.monotonic()
            shipped = demo_shipped.usable(demo_shipped.stack_options(self)) if self.cache_dir is not None else None
            if shipped is not None:
                self._start_shipped(devstack, shipped, started, wait)
                return self
            entry = self._cache_entry()
            if entry is not None and demo_prepared.load(entry) is not None:
                self._start_prepared(devstack, entry, started, wait)
                return self
            self.smtp = devstack.SmtpSink().start()
            if entry is not None:
                self.progress(f"Preparing the demo's data, once: later starts reuse it from {entry} ...")
            devstack.init_pen(self.data_dir, name=PEN_NAME, footer=FOOTER, base_url=self.server, port=self.port,
                              from_address=f"pen@{DOMAIN}")
            for package, disclaimer in DISCLAIMERS.items():
                devstack.set_package(self.data_dir, package, disclaimer)
            self.process = devstack.PenProcess(self.data_dir, self.port, smtp_port=self.smtp.port,
                                               env={"PEN_RETRY_BASE_SECONDS": "1"})
            # The server starts (another process) while the members are added (argon2 here).
            failure: list[BaseException] = []
            self._server_thread = threading.Thread(target=self._start_server, args=(failure,),
                                                   name="penmail-demo-server", daemon=True)
            self._server_thread.start()
            self._add_members(devstack)
            self._server_thread.join()
            if failure:
                self._server_failed(failure[0])
            ready = time.monotonic()
            self.progress(f"Seeding {self.messages} messages ...")
            self.seed_stats = self._run_async(self._seed())
            self.seed_stats["start_seconds"] = round(ready - started, 2)
            self.seed_stats["seed_seconds"] = round(time.monotonic() - ready, 2)
            if entry is not None:
                link = self.guest_link()
                demo_prepared.save(entry, self.data_dir, {
                    "seed_stats": self.seed_stats, "guests": self.guests,
                    "guest_link_path": link.removeprefix(self.server) if link else None})
            self._ready()
            return self
        except DemoError:
            self.stop()
            raise
        except Exception as exc:
            self.stop()
            raise DemoError(f"The demo could not start: {_one_line(exc) or type(exc).__name__}"
                            f"{'' if str(exc).rstrip().endswith('.') else '.'}") from exc
        except BaseException:
            self.stop()
            raise

    def _cache_entry(self) -> Path | None:
        if self.cache_dir is None:
            return None
        return demo_prepared.entry_for(Path(self.cache_dir), messages=self.messages, seed=self.seed,
                                       big_attachment_bytes=self.big_attachment_bytes, backdate=self.backdate)

    def _start_prepared(self, devstack, entry: Path, started: float, wait: bool = True) -> None:
        """A copy of the prepared PEN, its dates moved to today, served on this stack's port."""
        meta = demo_prepared.restore(entry, self.data_dir, self.server)
        self.prepared_from = entry
        self.seed_stats = dict(meta["seed_stats"])
        self.guests = dict(meta["guests"])
        self._guest_link_path = meta.get("guest_link_path")
        self._serve(devstack, started, wait)

    def _start_shipped(self, devstack, meta: dict[str, Any], started: float, wait: bool = True) -> None:
        """The data set shipped in the package, made this demo's (its own keys and CA), served
        on this stack's port; the attachments' files come after (tui/demo/shipped.py). The
        server process loads its modules while the data folder is filled."""
        self.data_dir.mkdir(mode=0o700)
        self.process = devstack.PenProcess(self.data_dir, self.port, smtp_port=devstack.free_port(),
                                           env={"PEN_RETRY_BASE_SECONDS": "1"}).spawn(held=True)
        self._guest_link_path = demo_shipped.restore(meta, self.data_dir, self.server)
        self.shipped = True
        self.seed_stats = dict(meta["seed_stats"])
        self.guests = dict(meta["guests"])
        store = Path(self.cache_dir) / f"blobs-{meta['digest']}"
        # Once the server is up (it comes first), the attachments' files.
        self._when_ready = lambda: demo_shipped.link_blobs(meta, store, self.data_dir / "blobs")
        self._serve(devstack, started, wait)

    def _serve(self, devstack, started: float, wait: bool = True) -> None:
        # The server starts (another process) while the SMTP sink starts here; it only
        # needs the sink's port, and retries a relay that is not up yet.
        if self.process is None:
            self.process = devstack.PenProcess(self.data_dir, self.port, smtp_port=devstack.free_port(),
                                               env={"PEN_RETRY_BASE_SECONDS": "1"})
        failure: list[BaseException] = []
        self._server_thread = threading.Thread(target=self._start_server, args=(failure,),
                                               name="penmail-demo-server", daemon=True)
        self._server_thread.start()
        self.smtp = devstack.SmtpSink(self.process.smtp_port).start()
        self._failure, self._started_at = failure, started
        self.seed_stats["seed_seconds"] = 0.0
        if wait:
            self.wait_ready()
        self._ready()

    def wait_ready(self) -> None:
        """Until the server answers (from any thread); DemoError, and `failure` set, when it
        did not start. Then what waits for the server (the attachments' files) starts."""
        if self._server_thread is not None:
            self._server_thread.join()
        with self._ready_lock:
            if self.failure is not None:
                raise self.failure
            if self._failure:
                try:
                    self._server_failed(self._failure[0])
                except DemoError as exc:
                    self.failure = exc
                    raise
            if "start_seconds" not in self.seed_stats:
                self.seed_stats["start_seconds"] = round(time.monotonic() - self._started_at, 2)
            if self._when_ready is not None and not self._stopped:
                when, self._when_ready = self._when_ready, None
                self._blob_maker = when()

    def _ready(self) -> None:
        link = guest_link_sentence(self)
        if link:
            self.progress(link.removesuffix("."))
        self.progress(f"Signing in as {self.email} (password: {self.password}) ...")

    @staticmethod
    def _server_failed(exc: BaseException) -> None:
        lines = [ln for ln in str(exc).splitlines()[1:] if ln.strip()]
        why = _one_line(lines[-1]) if lines else _one_line(str(exc).splitlines()[0])
        raise DemoError(f"The demo PEN server did not start ({why.rstrip('.')}).") from None

    def _start_server(self, failure: list) -> None:
        try:
            self.process.start()
        except BaseException as exc:  # reported by start() in the main thread
            failure.append(exc)

    def _add_members(self, devstack) -> None:
        for person in MEMBERS:
            role = "admin" if person.kind == "admin" else "member"
            devstack.add_user(self.data_dir, person.email, person.name, DEMO_PASSWORD, role=role,
                              package=person.package)

    @staticmethod
    def _run_async(coro):
        """asyncio.run here, or in a helper thread when this thread runs a loop already."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        box: dict[str, Any] = {}

        def runner():
            try:
                box["value"] = asyncio.run(coro)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        t = threading.Thread(target=runner, name="penmail-demo-seed")
        t.start()
        t.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    # ------------------------------------------------------------ seeding

    async def _seed(self) -> dict[str, Any]:
        from tui.pen_client import Address, PenClient

        rng = random.Random(self.seed)
        now = self.now or datetime.now(UTC)
        threads = Planner(rng, now, self.big_attachment_bytes).plan(self.messages)
        scratch = self.root / "files"
        scratch.mkdir()
        sem = asyncio.Semaphore(CONCURRENCY)
        clients: dict[str, PenClient] = {}
        guest_locks = {k: asyncio.Lock() for k in REGISTERING_GUESTS}
        sent: list[tuple[Step, Any]] = []  # (step, Message)
        stats: dict[str, Any] = {
            "threads": len(threads), "messages": 0, "replies": 0, "html": 0, "plain": 0, "attachments": 0,
            "attachment_bytes": 0, "largest_attachment": 0, "members": len(MEMBERS), "guests_invited": 0,
            "guests_registered": 0, "guest_replies": 0}

        def new_client() -> PenClient:
            return PenClient(self.server, ca_file=self.ca_file, timeout=60, deadline=120)

        member_locks = {p.key: asyncio.Lock() for p in MEMBERS}

        async def member(key: str) -> PenClient:
            async with member_locks[key]:
                if key not in clients:
                    client = new_client()
                    async with sem:
                        await client.login(PEOPLE[key].email, DEMO_PASSWORD)
                    clients[key] = client
                return clients[key]

        async def guest(key: str) -> PenClient:
            async with guest_locks[key]:
                if key in clients:
                    return clients[key]
                person = PEOPLE[key]
                token = await asyncio.to_thread(self._invitation_token, person.email)
                client = new_client()
                async with sem:
                    await client.register(token, person.name, GUEST_PASSWORD)
                self.guests[person.email] = GUEST_PASSWORD
                stats["guests_registered"] += 1
                clients[key] = client
                return client

        async def upload(client: PenClient, spec: FileSpec) -> str:
            folder = scratch / uuid.uuid4().hex
            folder.mkdir()
            path = folder / spec.filename
            await asyncio.to_thread(spec.make, path)
            async with sem:
                att = await client.upload(path, content_type=spec.content_type)
            path.unlink()
            folder.rmdir()
            stats["attachments"] += 1
            stats["attachment_bytes"] += att.size
            stats["largest_attachment"] = max(stats["largest_attachment"], att.size)
            return att.id

        async def run_thread(thread: Thread) -> None:
            done: list[tuple[Step, str]] = []  # (step, message id)
            for step in thread.steps:
                client = await (member(step.sender) if PEOPLE[step.sender].member else guest(step.sender))
                # A reply answers the newest message of the thread that its sender can read.
                parent = next((mid for s, mid in reversed(done)
                               if step.sender == s.sender or step.sender in s.recipients), None)
                attachments = [await upload(client, spec) for spec in step.files]

                def addrs(keys):
                    return [Address(PEOPLE[k].email, PEOPLE[k].name) for k in keys]

                async with sem:
                    message = await client.send(
                        to=addrs(step.to), cc=addrs(step.cc), bcc=addrs(step.bcc), subject=step.subject,
                        body_text=step.body.text, body_html=step.body.html, in_reply_to=parent,
                        attachments=attachments, idempotency_key=uuid.uuid4().hex)
                done.append((step, message.id))
                sent.append((step, message))

        try:
            # Threads go in parallel, each message after the one it answers; a guest's first
            # message waits for its invitation e-mail.
            try:
                async with asyncio.TaskGroup() as group:  # the first failure cancels the rest
                    for thread in threads:
                        group.create_task(run_thread(thread))
            except BaseExceptionGroup as group_error:
                raise _first(group_error) from None
            folders = await self._file_demo_mailbox(await member("ruiz"), sent, now, rng)
        finally:
            await asyncio.gather(*(c.aclose() for c in clients.values()), return_exceptions=True)
            shutil.rmtree(scratch, ignore_errors=True)

        expected = sum(len(step.recipients) for step, _ in sent)
        delivered = await asyncio.to_thread(self.smtp.handler.wait_for, expected, 60.0)
        if self.backdate:
            await asyncio.to_thread(self._backdate, sent)

        for step, message in sent:
            stats["messages"] += 1
            stats["replies"] += message.in_reply_to is not None
            stats["html" if message.body_html else "plain"] += 1
            stats["guest_replies"] += step.sender in REGISTERING_GUESTS
        stats["guests_invited"] = len({k for step, _ in sent for k in step.recipients if not PEOPLE[k].member})
        stats["notifications"] = expected
        stats["notifications_delivered"] = len(delivered)
        stats["demo_mailbox"] = folders
        return stats

    def guest_link(self) -> str | None:
        """The link of a notification e-mail to an outsider who has not registered: the
        browser path (landing page, sign-up, reading) from its start."""
        if self._guest_link_path:
            return self.server + self._guest_link_path
        waiting = {p.email for p in PEOPLE.values() if not p.member and p.key not in REGISTERING_GUESTS}
        for received in list(self.smtp.received) if self.smtp else []:
            if waiting & set(received.rcpt_tos):
                body = received.message.get_body(("plain",)).get_content()
                match = re.search(r"https://\S+/m/[A-Za-z0-9_-]+\?t=[A-Za-z0-9_-]+", body)
                if match:
                    return match.group(0)
        return None

    def _invitation_token(self, email: str, timeout: float = 30.0) -> str:
        """The link token in the first notification e-mail to `email` that the sink got."""
        deadline = time.monotonic() + timeout
        while True:
            for received in list(self.smtp.received):
                if email in received.rcpt_tos:
                    body = received.message.get_body(("plain",)).get_content()
                    match = re.search(r"/m/[A-Za-z0-9_-]+\?t=([A-Za-z0-9_-]+)", body)
                    if match:
                        return match.group(1)
            if time.monotonic() > deadline:
                raise DemoError(f"No invitation e-mail reached {email} within {timeout:.0f} seconds.")
            time.sleep(0.05)

    async def _file_demo_mailbox(self, client, sent, now: datetime, rng: random.Random) -> dict[str, int]:
        """Read, unread, archived and trashed, as a busy physician's mailbox is: old threads
        mostly read and many archived, a few in the trash, the last day or two mostly unread."""
        ruiz = "ruiz"
        last_reply: dict[str, datetime] = {}  # thread id -> when Dr. Ruiz last wrote in it
        incoming: dict[str, datetime] = {}  # thread id -> its newest message to Dr. Ruiz
        for step, message in sent:
            if step.sender == ruiz:
                last_reply[message.thread_id] = max(step.when, last_reply.get(message.thread_id, step.when))
            elif ruiz in step.recipients:
                incoming[message.thread_id] = max(step.when, incoming.get(message.thread_id, step.when))
        featured = {message.thread_id for step, message in sent if step.featured}
        fate: dict[str, str] = {}
        for thread_id, last in incoming.items():
            age = (now - last).total_seconds() / 86400
            roll = rng.random()
            if age > 14:
                fate[thread_id] = "trash" if roll < 0.1 else "archive" if roll < 0.55 else "inbox"
            elif age > 3:
                fate[thread_id] = "trash" if roll < 0.05 else "archive" if roll < 0.2 else "inbox"
            else:
                fate[thread_id] = "inbox"
        # However small the seed, every folder has something in it.
        oldest = sorted((t for t in incoming if t not in featured), key=incoming.get)
        for folder in ("trash", "archive"):
            if folder not in fate.values():
                spare = [t for t in oldest if fate[t] == "inbox"]
                if len(spare) > 2:
                    fate[spare[0]] = folder
        counts = {"inbox": 0, "archive": 0, "trash": 0, "sent": 0, "unread": 0}
        changes = []
        for step, message in sent:
            if step.sender == ruiz:
                counts["sent"] += 1
                continue
            if ruiz not in step.recipients:
                continue
            age = (now - step.when).total_seconds() / 86400
            folder = fate[message.thread_id]
            answered = last_reply.get(message.thread_id, now - timedelta(days=999)) > step.when
            chance = 0.85 if age < 2 else 0.3 if age < 7 else 0.03
            unread = folder == "inbox" and not answered and rng.random() < chance
            counts[folder] += 1
            counts["unread"] += unread
            if folder != "inbox" or not unread:
                changes.append((message.id, folder, unread))
        # Every copy arrives unread in the inbox; only what differs is changed.
        sem = asyncio.Semaphore(CONCURRENCY)

        async def patch(mid, folder, unread):
            async with sem:
                await client.update_message(mid, unread=unread, folder=None if folder == "inbox" else folder)

        await asyncio.gather(*(patch(*c) for c in changes))
        return counts

    def _backdate(self, sent) -> None:
        """Put each message at its planned time in the last weeks (the API stamps 'now')."""
        from sqlalchemy import bindparam, update

        from pen_server.db import Database
        from pen_server.models import MailboxEntry, Message, Notification
        from pen_server.settings import load_settings

        db = Database(load_settings(self.data_dir, env={}).database_url)
        try:
            rows = [{"mid": message.id, "when": step.when} for step, message in sent]
            later = [{"mid": message.id, "when": step.when + timedelta(seconds=2)} for step, message in sent]
            with db.session() as session:
                conn = session.connection()
                conn.execute(update(Message).where(Message.id == bindparam("mid"))
                             .values(sent_at=bindparam("when")).execution_options(synchronize_session=False), rows)
                conn.execute(update(MailboxEntry).where(MailboxEntry.message_id == bindparam("mid"))
                             .values(sent_at=bindparam("when")).execution_options(synchronize_session=False), rows)
                conn.execute(update(Notification).where(Notification.message_id == bindparam("mid"),
                                                        Notification.status == "sent")
                             .values(updated_at=bindparam("when")).execution_options(synchronize_session=False),
                             later)
        finally:
            db.dispose()

    # ------------------------------------------------------------ stop

    def _install_signal_handlers(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        # SIGHUP: the terminal (or the SSH connection) the demo ran in was closed.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:
                self._old_handlers[signum] = signal.signal(signum, self._on_signal)
            except (ValueError, OSError):
                pass

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, old in self._old_handlers.items():
            try:
                if signal.getsignal(signum) == self._on_signal:
                    signal.signal(signum, old if old is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass

    def _on_signal(self, signum, frame) -> None:
        old = self._old_handlers.get(signum)
        self.stop()
        if callable(old) and old is not self._on_signal:
            old(signum, frame)  # e.g. Python's own SIGINT handler: KeyboardInterrupt
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        elif old != signal.SIG_IGN:
            raise SystemExit(128 + signum)

    def stop(self) -> None:
        """Stop the server (SIGTERM), the SMTP sink, and remove the folder. Safe to call twice."""
        if not self._stop_lock.acquire(blocking=False):
            return  # another stop is running (e.g. a signal arrived during stop)
        try:
            if self._stopped:
                return
            self._stopped = True
            self._restore_signal_handlers()
            if self._server_thread is not None and self._server_thread is not threading.current_thread():
                self._server_thread.join()  # it ends once the server answers or has died
            with self._ready_lock:  # no helper process starts after this
                self._when_ready = None
            if self._blob_maker is not None and self._blob_maker.poll() is None:
                # Files are renamed into place whole; the next demo makes what is missing.
                self._blob_maker.terminate()
                try:
                    self._blob_maker.wait(timeout=STOP_SECONDS)
                except Exception:
                    self._blob_maker.kill()
            if self.process is not None:
                try:
                    # SIGTERM; a server still waiting on a client's idle connection is killed
                    # after a few seconds (its data is about to be removed anyway).
                    self.process.stop(timeout=STOP_SECONDS)
                except Exception:
                    self.process.kill()
            if self.smtp is not None:
                try:
                    self.smtp.stop()
                except Exception:
                    pass
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
            try:
                atexit.unregister(self.stop)
            except Exception:
                pass
        finally:
            self._stop_lock.release()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.proc is not None and self.process.proc.poll() is None


# ---------------------------------------------------------------- folders left behind

FOLDER_PREFIX = "penmail-demo-"
MARKER = "demo.pid"  # in each demo's folder: the process that made it
UNMARKED_GRACE_SECONDS = 3600  # a folder with no marker yet may be a demo starting this moment


def remove_left_behind(temp: Path | None = None) -> list[Path]:
    """Remove the folders of demos whose process is gone (killed with -9, or with a terminal
    before they could clean up), with any PEN server still running from one: each holds the
    demo CA's private key. Only this user's folders; a live demo's folder is left alone."""
    removed = []
    for folder in Path(temp or tempfile.gettempdir()).glob(FOLDER_PREFIX + "*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            try:
                owner = int((folder / MARKER).read_text(encoding="ascii").strip())
            except FileNotFoundError:
                if time.time() - folder.stat().st_mtime < UNMARKED_GRACE_SECONDS:
                    continue
                owner = 0
            except ValueError:
                owner = 0
            if owner and _alive(owner):
                continue
            _stop_servers_of(folder)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process has that number now: leave the folder be
    return True


def _stop_servers_of(folder: Path) -> None:
    """SIGTERM to this user's pen-server processes whose command line names the folder."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    needle = str(folder).encode()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            cmdline = (entry / "cmdline").read_bytes()
            if b"pen_server" in cmdline and needle in cmdline:
                os.kill(int(entry.name), signal.SIGTERM)
        except (OSError, ValueError):
            continue


# ---------------------------------------------------------------- penmail demo


def run_demo(launch: Callable[[DemoStack], int], *, err=None, **options) -> int:
    """Start the stack, run `launch(stack)` (the TUI), and stop the stack whatever happens.
    Returns launch's exit code; a failure is one sentence on stderr and exit code 1."""
    err = err or sys.stderr

    def say(line: str) -> None:
        print(line, file=err, flush=True)

    stack = DemoStack(progress=say, **options)
    try:
        try:
            stack.start(wait=False)  # the client's first frame comes while the server starts
        except DemoError as exc:
            say(f"penmail demo: {exc}")
            return 1
        try:
            code = launch(stack)
        except Exception as exc:
            say(f"penmail demo: the client stopped with an error: {_one_line(exc) or type(exc).__name__}")
            return 1
        if stack.failure is not None:  # the client waited for a server that did not start
            say(f"penmail demo: {stack.failure}")
            return 1
        return int(code) if isinstance(code, int) else 0
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        stack.stop()
