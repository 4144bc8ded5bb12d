"""The audit trail's hash chain (pen_server/audit.py), in process on SQLite and PostgreSQL:
whatever is done to the rows behind the server's back, `verify` names the first row that no
longer holds. Over HTTP and the command line: tests/server/test_after_send.py."""

import pytest
from sqlalchemy import delete, text, update

from pen_server import audit
from pen_server.db import Database, migrate
from pen_server.models import AuditHead, AuditRow

WHO = audit.Who("u1", "ann@abc.example", "api", "192.0.2.1")


@pytest.fixture
def db(tmp_path, database):
    url = database() or f"sqlite:///{tmp_path / 'pen.db'}"
    migrate(url)
    db = Database(url)
    with db.session() as s:
        for i in range(10):
            audit.append(s, [audit.Entry("read", WHO, f"m{i}"), audit.Entry("download", WHO, f"m{i}", "a1",
                                                                            detail={"range": "bytes=0-"})])
    yield db
    db.dispose()


def _verify(db) -> audit.Verdict:
    with db.session() as s:
        return audit.verify(s)


def test_a_whole_chain_verifies(db):
    verdict = _verify(db)
    assert verdict.broken is None and verdict.rows == 20
    with db.session() as s:
        rows = list(audit.all_rows(s))
    assert [r.id for r in rows] == list(range(1, 21)) and rows[0].prev_hash == audit.ZERO
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:]))


@pytest.mark.parametrize("change, broken, why", [
    (update(AuditRow).where(AuditRow.id == 7).values(client="198.51.100.9"), 7, "does not match its hash"),
    (update(AuditRow).where(AuditRow.id == 8).values(detail=None), 8, "does not match its hash"),
    (delete(AuditRow).where(AuditRow.id == 12), 12, "row 12 is missing"),
    (delete(AuditRow).where(AuditRow.id >= 19), 19, "rows from 19 on were removed"),
    (update(AuditHead).values(last_id=20, last_hash="f" * 64), 20, "head of the chain"),
])
def test_a_change_behind_the_servers_back_is_named(db, change, broken, why):
    with db.session() as s:
        s.execute(change)
    verdict = _verify(db)
    assert verdict.broken == broken and why in verdict.why, verdict


def test_a_row_rewritten_with_its_own_hash_breaks_the_next_link(db):
    """Recomputing the changed row's hash does not help: the next row names the old one."""
    with db.session() as s:
        row = s.get(AuditRow, 5)
        row.actor = "mallory@abc.example"
        row.hash = audit.hash_of(row)
    verdict = _verify(db)
    assert verdict.broken == 6 and "does not follow row 5" in verdict.why


def test_no_row_holds_a_subject_a_body_or_a_password(db):
    with db.engine.connect() as conn:
        columns = [c for c in conn.execute(text("SELECT * FROM audit_log")).keys()]
    assert not {"subject", "body", "body_text", "password", "password_hash"} & set(columns)
