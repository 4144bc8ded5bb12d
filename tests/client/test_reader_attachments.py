"""The reader's attachments against the real server over TLS, driven by keys: the list,
saving one and all (to the download folder and to a folder typed in), hostile names
staying inside the folder, the progress bar, stopping a download (the .part stays) and
saving again (it resumes with Range), and opening a saved file only on request."""

from __future__ import annotations

import asyncio
import os
import stat
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from rich.text import Text

from tests.conftest import PASSWORD
from tests.tui_helpers import assert_clean_render, at_mailbox, config_for, rendered, wait_for
from tui.app import PenmailApp
from tui.pen_client import Summary
from tui.safe_text import one_line
from tui.screens.reader import ReaderScreen
from tui.widgets.download_panel import DownloadPanel
from tui.widgets.reader_attachments import ReaderAttachmentList

BIG = 6 * (1 << 20) + 4321  # several 1 MiB chunks, not a multiple of one


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PENMAIL_PASSWORD", raising=False)
    return tmp_path


def upload_as(pen, who: str, files: list[tuple[str, bytes]]) -> list[dict]:
    out = []
    with pen.as_user(who) as c:
        for name, data in files:
            r = c.post(f"/uploads?filename={quote(name, safe='')}", content=data,
                       headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
            out.append(r.json())
    return out


def app_for(pen, who: str, folder: Path) -> PenmailApp:
    config = config_for(pen, f"{who}@abc.example", tmp=folder)
    return PenmailApp(config, env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)


async def open_reader(pilot, sent: dict) -> ReaderScreen:
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app))
    app.open_message(Summary.of(sent))
    await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
    await pilot.pause()
    return app.screen


async def finished(pilot, reader: ReaderScreen) -> str:
    panel = reader.query_one(DownloadPanel)
    await wait_for(pilot, lambda: not reader.downloading and panel.display and not panel.running, timeout=30)
    await pilot.pause()
    return rendered(pilot.app)[0]


def flat(text: str) -> str:
    """The screen's text with wrapped lines joined, to find a sentence that wrapped."""
    return " ".join(line.strip(" │▏▕") for line in text.splitlines() if line.strip())


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


async def test_save_one_and_all_by_key(pen, send, state):
    tag = uuid.uuid4().hex[:8]
    small, big = b"test,value\nHbA1c,5.4\n" * 50, os.urandom(BIG)
    atts = upload_as(pen, "ann", [("lab results.csv", small), ("knee scan.bin", big)])
    sent = send("ann", ["bob"], subject=f"files {tag}", attachments=[a["id"] for a in atts])
    downloads, other = state / "downloads", state / "elsewhere"
    downloads.mkdir()
    other.mkdir()
    async with app_for(pen, "bob", downloads).run_test(size=(100, 32)) as pilot:
        reader = await open_reader(pilot, sent)
        listing = reader.query_one(ReaderAttachmentList)
        text = rendered(pilot.app)[0]
        assert "> 1. lab results.csv  (application/octet-stream, 1.0 KB)" in text
        assert "2. knee scan.bin  (application/octet-stream, 6.0 MB)" in text
        # The message opens on its files (the list has the focus); j moves, the ">" and the
        # terminal cursor follow.
        await wait_for(pilot, lambda: pilot.app.focused is listing)
        await pilot.press("j")
        assert listing.highlighted_attachment.filename == "knee scan.bin"
        await pilot.pause()
        row = listing.content_region.y + 1 - int(listing.scroll_offset.y)
        assert pilot.app.cursor_position.y == row
        assert rendered(pilot.app)[0].splitlines()[row].lstrip().startswith("> 2. knee scan.bin")

        # s saves the highlighted one into the download folder, with a progress bar.
        await pilot.press("s")
        text = await finished(pilot, reader)
        panel = reader.query_one(DownloadPanel)
        assert panel.bar.percentage == 1.0 and panel.bar.total == BIG
        assert f"Saved knee scan.bin in {downloads}; press x to open it." in flat(text)
        assert files_in(downloads) == {"knee scan.bin": big}
        assert "saved as knee scan.bin" in text

        # s again: the copy there has the same sha256, so nothing is written (as `penmail get`).
        await pilot.press("s")
        text = await finished(pilot, reader)
        assert "knee scan.bin is already saved in" in flat(text) and "nothing was written" in flat(text)
        assert files_in(downloads) == {"knee scan.bin": big}

        # S saves all of them; a name taken by other bytes gets " (1)", never overwritten.
        (downloads / "lab results.csv").write_bytes(b"someone else's file")
        await pilot.press("S")
        text = await finished(pilot, reader)
        assert "Saved 2 attachments in" in flat(text) and "(1 of them already there, not written again)" in flat(text)
        assert files_in(downloads) == {"knee scan.bin": big, "lab results.csv": b"someone else's file",
                                       "lab results (1).csv": small}

        # W asks for a folder (the download folder is filled in); enter saves every one there.
        await pilot.press("W")
        field = reader.query_one("#save-folder")
        assert field.display and pilot.app.focused is field and field.value == str(downloads)
        field.value = ""
        await pilot.press(*str(other), "enter")
        text = await finished(pilot, reader)
        assert files_in(other) == {"knee scan.bin": big, "lab results.csv": small}
        # A folder that is not there: one sentence, nothing made.
        await pilot.press("w")
        field.value = ""
        await pilot.press(*str(state / "missing"), "enter")
        text = await finished(pilot, reader)
        assert f"The download folder {state / 'missing'} does not exist" in flat(text)
        assert not (state / "missing").exists()
        # Nothing but finished files anywhere (no .part or metadata left over).
        assert sorted(p.name for p in downloads.iterdir() if ".part" in p.name) == []


async def test_hostile_names_land_inside_the_download_folder(pen, send, state, hostile):
    names = [n for n in hostile["filenames"] if n]  # the API refuses an empty name
    files = [(name, f"file {i} {name!r}".encode()) for i, name in enumerate(names)]
    atts = upload_as(pen, "ann", files)
    sent = send("ann", ["bob"], subject=f"hostile names {uuid.uuid4().hex[:6]}",
                attachments=[a["id"] for a in atts])
    downloads = state / "nest" / "downloads"
    downloads.mkdir(parents=True)
    (state / "nest" / "sentinel").write_text("untouched")
    async with app_for(pen, "bob", downloads).run_test(size=(120, 40)) as pilot:
        reader = await open_reader(pilot, sent)
        assert_clean_render(pilot.app)
        await pilot.press("S")
        text = await finished(pilot, reader)
        assert f"Saved {len(names)} attachments in" in text
        assert_clean_render(pilot.app)
        # Every row is the name the server gave, cleaned and shown literally (never markup).
        listing = reader.query_one(ReaderAttachmentList)
        assert listing.option_count == len(names)
        for i, att in enumerate(reader.message.attachments):
            prompt = listing.get_option_at_index(i).prompt
            assert isinstance(prompt, Text) and not prompt.spans
            assert f"{i + 1}. {one_line(att.filename, 120) or '(no name)'}  (" in prompt.plain
    saved = sorted(downloads.iterdir())
    assert len(saved) == len(names)
    for path in saved:
        assert path.parent == downloads and path.is_file() and not path.is_symlink()
        assert not path.name.startswith(".") and "/" not in path.name and len(path.name.encode()) <= 255
    assert sorted(p.read_bytes() for p in saved) == sorted(data for _, data in files)
    assert sorted(p.name for p in (state / "nest").iterdir()) == ["downloads", "sentinel"]
    assert (state / "nest" / "sentinel").read_text() == "untouched"


def gated_downloads(client, pause_after: int, monkeypatch):
    """Wrap the signed-in client's download so that each response stops (until `gate` is
    set) once `pause_after` bytes went by: a download held mid-way, for the keys to act on.
    The body then comes through httpx (the wrapped call), not the direct TLS path."""
    from tui import downloads

    monkeypatch.setattr(downloads, "RAW_DOWNLOADS", False)
    original = client.download
    gate, held_up = asyncio.Event(), asyncio.Event()
    starts: list[int] = []

    @asynccontextmanager
    async def download(message_id, attachment_id, *, start=0, if_range=None):
        starts.append(start)
        async with original(message_id, attachment_id, start=start, if_range=if_range) as response:
            raw = response.aiter_raw

            async def held(*args, **kw):
                seen = 0
                async for piece in raw(*args, **kw):
                    yield piece
                    seen += len(piece)
                    if seen >= pause_after and not gate.is_set():
                        held_up.set()
                        await gate.wait()

            response.aiter_raw = held
            yield response

    client.download = download
    return gate, held_up, starts


async def test_stop_keeps_the_part_and_saving_again_resumes(pen, send, state, monkeypatch):
    big = os.urandom(BIG)
    atts = upload_as(pen, "ann", [("scan.bin", big)])
    sent = send("ann", ["bob"], subject=f"resume {uuid.uuid4().hex[:6]}", attachments=[atts[0]["id"]])
    downloads = state / "downloads"
    downloads.mkdir()
    async with app_for(pen, "bob", downloads).run_test(size=(100, 30)) as pilot:
        reader = await open_reader(pilot, sent)
        gate, held_up, starts = gated_downloads(pilot.app.session.client, pause_after=(5 << 20) // 2,
                                                 monkeypatch=monkeypatch)
        panel = reader.query_one(DownloadPanel)
        await pilot.press("s")
        # Held mid-way: the bar shows part of it, with bytes, speed and time left.
        await wait_for(pilot, lambda: held_up.is_set() and panel.running and 0 < panel.bar.progress < BIG)
        await pilot.pause(0.2)
        text = rendered(pilot.app)[0]
        assert "Saving: scan.bin" in text and " of 6.0 MB, " in text
        assert "Stop download" in text  # c is in the footer while a download runs
        await pilot.press("c")
        text = await finished(pilot, reader)
        assert "The download of scan.bin was stopped; what arrived so far is kept" in flat(text)
        part = downloads / "scan.bin.part"
        kept = part.stat().st_size
        assert 2 << 20 <= kept < BIG
        assert part.read_bytes() == big[:kept]
        assert not (downloads / "scan.bin").exists()
        assert "Stop download" not in rendered(pilot.app)[0]
        # Saving again goes on from the .part (a Range request from where it stopped).
        gate.set()
        await pilot.press("s")
        text = await finished(pilot, reader)
        assert starts == [0, kept]
        assert "Saved scan.bin in" in text
        assert (downloads / "scan.bin").read_bytes() == big
        assert sorted(p.name for p in downloads.iterdir()) == ["scan.bin"]
        assert panel.bar.percentage == 1.0

        # escape stops a running download too (and does not leave the message); the saved
        # copy is moved away first, or s would find it there and write nothing.
        (downloads / "scan.bin").rename(state / "scan.bin")
        gate.clear()
        held_up.clear()
        await pilot.press("s")
        await wait_for(pilot, lambda: held_up.is_set() and panel.running)
        await pilot.press("escape")
        await finished(pilot, reader)
        assert pilot.app.screen is reader
        assert (downloads / "scan.bin.part").exists()  # kept for the next save
        gate.set()


async def test_open_a_saved_file_only_on_request(pen, send, state, monkeypatch):
    atts = upload_as(pen, "ann", [("notes.txt", b"hello")])
    sent = send("ann", ["bob"], subject=f"open {uuid.uuid4().hex[:6]}", attachments=[atts[0]["id"]])
    downloads, bin_dir = state / "downloads", state / "bin"
    downloads.mkdir()
    bin_dir.mkdir()
    record = state / "opened.txt"
    opener = bin_dir / "xdg-open"
    opener.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{record}'\n")
    opener.chmod(opener.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    async with app_for(pen, "bob", downloads).run_test(size=(100, 30)) as pilot:
        reader = await open_reader(pilot, sent)
        await pilot.press("x")
        await pilot.pause()
        assert "Save the attachment first (s); then x opens the saved copy." in rendered(pilot.app)[0]
        await pilot.press("s")
        await finished(pilot, reader)
        assert not record.exists()  # saving never opens anything
        await pilot.press("x")
        await wait_for(pilot, lambda: "Opened notes.txt with xdg-open." in rendered(pilot.app)[0])
        assert record.read_text() == f"{downloads / 'notes.txt'}\n"
        # Without an opener: one sentence.
        monkeypatch.setenv("PATH", str(state / "nothing-here"))
        await pilot.press("x")
        await wait_for(pilot, lambda: "There is no program here to open files with" in rendered(pilot.app)[0])


def test_progress_figures_in_words():
    from tui.downloads import Progress
    from tui.text.format import duration_left as duration
    from tui.widgets.download_panel import figures, heading

    p = Progress(1536 * 1024, 6 << 20, 3.2 * (1 << 20), 1.4, "scan.bin", 2, 3)
    assert figures(p) == "1.5 MB of 6.0 MB, 3.2 MB/s, 2 seconds left"
    assert heading(p) == "Saving 2 of 3: scan.bin  (c or escape stops; what arrived is kept)"
    assert figures(Progress(0, 10, 0.0, None, "a")) == "0 bytes of 10 bytes, starting, time left unknown"
    assert [duration(s) for s in (0, 1, 59.2, 61, 3600 * 2 + 65)] == [
        "0 seconds left", "1 second left", "1 min 00 s left", "1 min 01 s left", "2 h 01 min left"]


def test_opener_is_an_argument_list_and_never_a_shell(tmp_path, monkeypatch):
    from tui.downloads import opener

    monkeypatch.setenv("PATH", str(tmp_path))
    assert opener.opener_command("linux") is None
    target = tmp_path / "a; rm -rf ~ $(x).txt"
    target.write_text("x")
    assert opener.open_file(target).startswith("There is no program here to open files with (xdg-open")
    record = tmp_path / "args"
    script = tmp_path / "xdg-open"
    script.write_text(f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{record}'\nexit 3\n")
    script.chmod(0o755)
    assert opener.opener_command("linux") == [str(script)]
    assert opener.open_file(target) == (f"xdg-open could not open {target.name} (it ended with code 3); "
                                        f"the file is in {tmp_path}.")
    assert record.read_text() == f"{target}\n"  # one argument, the name untouched by any shell
    assert opener.open_file(tmp_path / "gone.txt") == f"gone.txt is no longer in {tmp_path}, so it was not opened."
