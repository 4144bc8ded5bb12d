"""The ids of the ``[keys]`` table: checked against the real bindings at start, shown by F1,
listed in docs/keys.md, and the examples in tui/config/__init__.py use ones that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tui.config
from tui.app import binding_ids, check_key_ids
from tui.cli import main
from tui.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_the_bindings_have_the_ids_people_remap():
    ids = binding_ids()
    assert {"mailbox.quit", "mailbox.compose", "reader.reply", "compose.send", "list.down", "text.top"} <= ids
    assert all(re.fullmatch(r"[a-z_]+\.[a-z_]+", i) for i in ids), sorted(ids)


def test_a_typo_in_keys_is_one_sentence_and_status_2(tmp_path, monkeypatch, capsys):
    path = tmp_path / "config.toml"
    path.write_text('[keys]\n"mailbox.compose" = "n"\n"mailbox.qiut" = "x"\n', encoding="utf-8")
    monkeypatch.setenv("PENMAIL_CONFIG", str(path))
    assert main([]) == 2  # before any screen: the TUI never starts
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"penmail: In {path}, keys has 'mailbox.qiut', which is not an action id;")
    assert err.count("\n") == 0 and "compose" not in err


def test_real_ids_pass(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[keys]\n"mailbox.compose" = "n"\n"reader.reply" = "r,ctrl+r"\n', encoding="utf-8")
    check_key_ids(load_config(path, env={}))
    with pytest.raises(ConfigError):
        check_key_ids(load_config(_write(tmp_path / "bad.toml", '[keys]\nquit = "q"\n'), env={}))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_config_docstring_uses_real_ids():
    named = re.findall(r'^\s+"([a-z_.]+)" = ', tui.config.__doc__, re.M)
    assert named and set(named) <= binding_ids()


def test_the_keys_page_lists_every_id():
    keys_page = (REPO / "docs" / "keys.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", keys_page, re.M))
    assert listed == binding_ids()
