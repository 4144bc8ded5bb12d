"""tui.drafts: drafts survive crashes, and broken files never break the list."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tui.drafts import (
    Draft,
    DraftError,
    DraftStore,
    account_key,
    reusable_upload,
    upload_record,
)
from tui.files import write_atomic

REPO = Path(__file__).resolve().parents[2]


def test_new_draft_has_id_and_idempotency_key() -> None:
    a, b = Draft(), Draft()
    assert len(a.id) == 32 and a.id != b.id
    assert len(a.idempotency_key) >= 32 and a.idempotency_key != b.idempotency_key
    assert a.idempotency_key.isascii() and a.idempotency_key.isprintable()
    old = a.idempotency_key
    assert a.new_idempotency_key() != old and a.idempotency_key != old


def test_round_trip(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    draft = Draft(
        to=["Ann Lee <ann@x.example>"],
        cc=["bob@x.example"],
        bcc=["c@x.example"],
        subject="Re: [@click=app.quit]results[/] \u202e",
        body="Hello\n\x1b[2J\nbye",
        attachments=["/home/ann/report.pdf"],
        in_reply_to="msg1",
        forward_of=None,
        forward_attachment_ids=["att1"],
    )
    store.save(draft)
    loaded = store.load(draft.id)
    assert loaded == draft
    path = tmp_path / f"{draft.id}.json"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert json.loads(path.read_text("utf-8"))["idempotency_key"] == draft.idempotency_key


def test_save_updates_updated_at_and_list_is_newest_first(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    first, second, third = Draft(subject="1"), Draft(subject="2"), Draft(subject="3")
    for d in (first, second, third):
        store.save(d)
        time.sleep(0.002)
    created = first.created_at
    store.save(first)
    assert first.updated_at > first.created_at == created
    assert [d.subject for d in store.list()] == ["1", "3", "2"]


def test_delete(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    draft = Draft()
    store.save(draft)
    assert store.delete(draft.id) is True
    assert store.load(draft.id) is None
    assert store.delete(draft.id) is False
    assert store.list() == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "x" * 32, "A" * 32, None])
def test_ids_cannot_reach_other_files(tmp_path: Path, bad: str) -> None:
    store = DraftStore(tmp_path / "drafts")
    assert store.load(bad) is None
    assert store.delete(bad) is False
    with pytest.raises(DraftError):
        store.save(Draft(id=bad))  # type: ignore[arg-type]


def test_broken_files_are_skipped(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    good = Draft(subject="good")
    store.save(good)
    other = "0" * 32
    broken = {
        "1" * 32: b"{not json",
        "2" * 32: b"",
        "3" * 32: b"\xff\xfe",
        "4" * 32: b"[1, 2]",
        "5" * 32: json.dumps({"id": "5" * 32, "idempotency_key": "k", "to": "not a list"}).encode(),
        "6" * 32: json.dumps({"id": other, "idempotency_key": "k"}).encode(),  # id does not match its name
        "7" * 32: json.dumps({"id": "7" * 32, "idempotency_key": "bad key\n"}).encode(),
        "8" * 32: b"[" * 100_000,
    }
    for name, data in broken.items():
        (tmp_path / f"{name}.json").write_bytes(data)
    (tmp_path / "notes.txt").write_text("not a draft")
    (tmp_path / f"{'a' * 32}.json").mkdir()
    assert [d.subject for d in store.list()] == ["good"]
    for name in broken:
        assert store.load(name) is None


def test_older_files_without_new_fields_load(tmp_path: Path) -> None:
    draft_id = "b" * 32
    (tmp_path / f"{draft_id}.json").write_text(json.dumps({"id": draft_id, "idempotency_key": "k1", "subject": "old"}))
    loaded = DraftStore(tmp_path).load(draft_id)
    assert loaded is not None and loaded.subject == "old" and loaded.to == [] and loaded.forward_of is None
    assert loaded.account is None and loaded.uploads == {}
    assert loaded.belongs_to(account_key("https://a.example", "x@a.example"))  # offered to anyone


def test_the_account_key_is_normalised_as_the_keyrings() -> None:
    assert account_key(" https://pen.example:8443/ ", " Ann@ABC.example ") == "https://pen.example:8443|ann@abc.example"


def test_a_draft_belongs_to_its_account(tmp_path: Path) -> None:
    ann = account_key("https://pen.example", "ann@abc.example")
    bob = account_key("https://pen.example", "bob@abc.example")
    other_pen = account_key("https://other.example", "ann@abc.example")
    store = DraftStore(tmp_path)
    mine, legacy = Draft(subject="mine", account=ann), Draft(subject="legacy")
    store.save(mine)
    store.save(legacy)
    assert store.load(mine.id).account == ann
    assert {d.subject for d in store.list(account=ann)} == {"mine", "legacy"}
    assert {d.subject for d in store.list(account=bob)} == {"legacy"}
    assert {d.subject for d in store.list(account=other_pen)} == {"legacy"}
    assert {d.subject for d in store.list()} == {"mine", "legacy"}
    with pytest.raises(DraftError):
        Draft.from_dict({**mine.to_dict(), "account": 7})


def test_upload_records_round_trip_and_bad_ones_are_dropped(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    good = upload_record("u" * 22, 10, 123, "A" * 64)
    draft = Draft(attachments=["/f/a", "/f/b"], uploads={"/f/a": good})
    store.save(draft)
    assert store.load(draft.id).uploads == {"/f/a": {"id": "u" * 22, "size": 10, "mtime_ns": 123, "sha256": "a" * 64}}
    data = draft.to_dict()
    data["uploads"] = {"/f/a": good, "/f/b": {"id": "x", "size": -1, "mtime_ns": 1}, "/f/c": {"id": "y", "size": 3},
                       "/f/d": "nonsense", "/f/e": {"id": "bad id", "size": 1, "mtime_ns": 1}}
    assert Draft.from_dict(data).uploads == {"/f/a": good}  # a bad record costs an upload, not the draft
    with pytest.raises(DraftError):
        Draft.from_dict({**data, "uploads": ["/f/a"]})


def test_an_upload_is_reused_only_while_the_file_is_unchanged(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "scan.bin"
    path.write_bytes(b"0123456789")
    info = path.stat()
    record = upload_record("up1", 10, info.st_mtime_ns, hashlib.sha256(b"0123456789").hexdigest())
    assert reusable_upload(str(path), record) == "up1"
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 5_000_000_000))
    assert reusable_upload(str(path), record) == "up1"  # touched, same bytes: the hash says so
    assert reusable_upload(str(path), upload_record("up1", 10, info.st_mtime_ns)) is None  # no hash to ask
    path.write_bytes(b"9876543210")
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert reusable_upload(str(path), {**record, "sha256": None}) == "up1"  # same size and time: taken as same
    assert reusable_upload(str(path), {**record, "mtime_ns": 1}) is None  # other bytes
    path.write_bytes(b"short")
    assert reusable_upload(str(path), record) is None  # other size
    path.unlink()
    assert reusable_upload(str(path), record) is None  # gone
    assert reusable_upload(str(path), None) is None


def test_stale_temp_files_are_cleared(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    stale = tmp_path / ".x.json.abc.tmp"
    fresh = tmp_path / ".y.json.def.tmp"
    stale.write_text("half")
    fresh.write_text("in use")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert store.list() == []
    assert not stale.exists() and fresh.exists()


def test_write_atomic_leaves_no_temp_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    write_atomic(target, b"one")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_default_root_is_in_the_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    store = DraftStore()
    assert store.root == tmp_path / "state" / "drafts"
    assert store.root.is_dir()


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from tui.drafts import Draft, DraftStore

    store = DraftStore(sys.argv[2])
    draft = Draft(to=["ann@x.example"])
    i = 0
    while True:
        i += 1
        draft.subject = str(i)
        draft.body = f"line {i}\\n" * (1 + (i * 7919) % 3000)
        store.save(draft)
        if i == 1:
            print(draft.id, flush=True)
    """
)


@pytest.mark.parametrize("delay", [0.2, 0.45, 0.7])
def test_a_draft_survives_kill_9(tmp_path: Path, delay: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(REPO), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        draft_id = proc.stdout.readline().strip()
        assert len(draft_id) == 32
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    store = DraftStore(tmp_path)
    draft = store.load(draft_id)
    assert draft is not None, "the draft file was left half-written"
    i = int(draft.subject)
    assert i >= 1
    assert draft.body == f"line {i}\n" * (1 + (i * 7919) % 3000)
    assert [d.id for d in store.list()] == [draft_id]
