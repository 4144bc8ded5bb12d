"""tui.files: attachment names cannot escape, hide, overwrite or break the file system."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tui.files import (
    MAX_NAME_BYTES,
    UnsafePathError,
    create_exclusive,
    parse_content_disposition,
    safe_filename,
    unique_path,
)

HOSTILE = json.loads((Path(__file__).parents[1] / "data" / "hostile.json").read_text("utf-8"))
NAMES = HOSTILE["filenames"]
HEADERS = HOSTILE["headers"]
FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069/\\\\]")


@pytest.mark.parametrize("name", NAMES, ids=[f"name{i}" for i in range(len(NAMES))])
def test_safe_filename_is_one_harmless_component(name: str) -> None:
    out = safe_filename(name)
    assert out and out not in (".", "..")
    assert not out.startswith((".", " ")) and not out.endswith((".", " "))
    assert not FORBIDDEN.search(out)
    assert len(out.encode("utf-8")) <= MAX_NAME_BYTES
    assert Path(out).name == out
    assert safe_filename(out) == out  # idempotent


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../.ssh/authorized_keys", "authorized_keys"),
        ("..\\..\\Windows\\System32\\drivers\\etc\\hosts", "hosts"),
        ("/etc/passwd", "passwd"),
        ("C:\\autoexec.bat", "autoexec.bat"),
        ("", "download"),
        (".", "download"),
        ("..", "download"),
        ("...", "download"),
        (".bashrc", "bashrc"),
        ("a/b/c.txt", "c.txt"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("COM1", "_COM1"),
        ("LPT9.pdf", "_LPT9.pdf"),
        ("aux", "_aux"),
        ("Nul.tar.gz", "_Nul.tar.gz"),
        ("console.txt", "console.txt"),
        ("report\u202efdp.exe", "reportfdp.exe"),
        ("name\x00.pdf", "name.pdf"),
        ("name\r\n.pdf", "name.pdf"),
        ("trailing dot.", "trailing dot"),
        ("trailing space ", "trailing space"),
        ("a:b?c*.txt", "a_b_c_.txt"),
        ("C:\\Users\\ann\\", "ann"),
        ("Résumé 2026.pdf", "Résumé 2026.pdf"),
    ],
)
def test_safe_filename_examples(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


def test_fallback_is_used_and_sanitised() -> None:
    assert safe_filename("", fallback="attachment.bin") == "attachment.bin"
    assert safe_filename("..", fallback="../x") == "x"
    assert safe_filename(None) == "download"  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [n for n in NAMES if len(n.encode("utf-8")) > MAX_NAME_BYTES])
def test_long_names_keep_their_extension_within_255_bytes(name: str) -> None:
    out = safe_filename(name)
    assert len(out.encode("utf-8")) <= MAX_NAME_BYTES
    assert out.endswith(os.path.splitext(name)[1])
    out.encode("utf-8").decode("utf-8")  # cut on a character boundary


def test_multibyte_truncation_is_on_a_character_boundary() -> None:
    out = safe_filename("€" * 300 + ".pdf")
    assert out.endswith(".pdf") and set(out[:-4]) == {"€"}
    assert len(out.encode("utf-8")) <= MAX_NAME_BYTES


def test_unique_path_never_names_an_existing_file(tmp_path: Path) -> None:
    assert unique_path(tmp_path, "a.pdf") == tmp_path / "a.pdf"
    (tmp_path / "a.pdf").write_text("1")
    assert unique_path(tmp_path, "a.pdf") == tmp_path / "a (1).pdf"
    (tmp_path / "a (1).pdf").write_text("2")
    assert unique_path(tmp_path, "../a.pdf") == tmp_path / "a (2).pdf"
    os.symlink(tmp_path / "nowhere", tmp_path / "b")  # a dangling link counts as taken
    assert unique_path(tmp_path, "b") == tmp_path / "b (1)"


def test_unique_path_keeps_long_names_within_the_limit(tmp_path: Path) -> None:
    name = "x" * 300 + ".pdf"
    first = unique_path(tmp_path, name)
    first.write_text("1")
    second = unique_path(tmp_path, name)
    assert second != first and second.name.endswith(" (1).pdf")
    assert len(second.name.encode("utf-8")) <= MAX_NAME_BYTES


def test_every_hostile_name_lands_inside_and_nothing_is_overwritten(tmp_path: Path) -> None:
    folder = tmp_path / "downloads"
    folder.mkdir()
    created: list[Path] = []
    for i, name in enumerate(NAMES):
        path, fd = create_exclusive(folder, name)
        try:
            os.write(fd, f"content {i}".encode())
        finally:
            os.close(fd)
        assert path.resolve().parent == folder.resolve()
        created.append(path)
    assert len(set(created)) == len(NAMES)  # "results.pdf" twice -> two files
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in created)
    for i, path in enumerate(created):
        assert path.read_text() == f"content {i}"
        assert (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in created[-2:]] == ["results.pdf", "results (1).pdf"]
    assert list(tmp_path.iterdir()) == [folder]  # nothing outside the folder


def test_create_exclusive_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_text("keep me")
    folder = tmp_path / "dl"
    folder.mkdir()
    os.symlink(target, folder / "report.pdf")
    path, fd = create_exclusive(folder, "report.pdf")
    os.write(fd, b"new")
    os.close(fd)
    assert path == folder.resolve() / "report (1).pdf"
    assert target.read_text() == "keep me"


def test_create_exclusive_skips_a_directory_of_that_name(tmp_path: Path) -> None:
    (tmp_path / "report.pdf").mkdir()
    path, fd = create_exclusive(tmp_path, "report.pdf")
    os.close(fd)
    assert path.name == "report (1).pdf"


def test_unsafe_path_error_is_a_value_error() -> None:
    assert issubclass(UnsafePathError, ValueError)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (HEADERS["content_disposition_traversal"], "authorized_keys"),
        (HEADERS["content_disposition_both_orders"], "safe.pdf"),
        ("attachment; filename=\"../../evil.pdf\"; filename*=UTF-8''good%20one.pdf", "good one.pdf"),
        ('attachment; filename="plain.txt"', "plain.txt"),
        ("attachment; filename=bare.txt", "bare.txt"),
        ('attachment; filename="semi;colon \\"q\\".txt"', "semi;colon _q_.txt"),
        ("attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf", "€ rates.pdf"),
        ("attachment; filename*=utf-8'en'na%C3%AFve.txt", "naïve.txt"),
        ("attachment; filename*=iso-8859-1''caf%E9.txt", "café.txt"),
        ("attachment; filename*=UTF-8''%1B%5D0%3Bx%07.pdf", "pdf"),
        ("attachment; filename*=UTF-8''%FF%FE.pdf; filename=\"ok.pdf\"", "ok.pdf"),
        ("attachment; filename*=koi8-r''x.txt; filename=\"ok.txt\"", "ok.txt"),
        ("attachment; filename=\"..\"", "download"),
        ("attachment", None),
        ("inline; size=3", None),
        ("", None),
        (None, None),
        ("attachment; filename", None),
        ('attachment; filename="unterminated', "unterminated"),
    ],
)
def test_parse_content_disposition(header: str | None, expected: str | None) -> None:
    assert parse_content_disposition(header) == expected


def test_parsed_name_is_already_safe() -> None:
    for header in HEADERS.values():
        name = parse_content_disposition(header)
        assert name is not None and safe_filename(name) == name
