"""tui.config: settings are checked, and every problem is one sentence naming file and key."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
import pytest

from tui.config import DEFAULT_THEME, Config, ConfigError, config_path, load_config, state_dir


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body, encoding="utf-8")
    return path


def error_for(tmp_path: Path, body: str) -> str:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"In {path}, ") and message.endswith(".")
    assert "\n" not in message
    return message


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "nope.toml", env={})
    assert config == Config()
    assert config.server is None and config.theme == DEFAULT_THEME and config.animations is False
    assert config.download_dir == Path(platformdirs.user_downloads_path())
    assert config.keys == {}


def test_full_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    path = write(
        tmp_path,
        """
server = "https://pen.example:8443/"
ca_file = "ca.pem"
email = "Ann@Pen.Example"
password_command = "pass show 'pen mail'"
download_dir = "dl"
theme = "high-contrast"

[keys]
"mailbox.quit" = "q"
"mailbox.compose" = ["c", "ctrl+n"]
"reader.reply" = "r,shift+r"

[ui]
animations = true
""",
    )
    config = load_config(path, env={})
    assert config.server == "https://pen.example:8443"
    assert config.ca_file == ca
    assert config.email == "Ann@pen.example"  # the domain is normalised, the local part is not
    assert config.password_command == "pass show 'pen mail'"
    assert config.download_dir == tmp_path / "dl"
    assert config.theme == "high-contrast"
    assert config.keys == {"mailbox.quit": "q", "mailbox.compose": "c,ctrl+n", "reader.reply": "r,shift+r"}
    assert config.animations is True
    assert config.path == path


@pytest.mark.parametrize("theme", ["textual-dark", "high-contrast", "textual-ansi"])
def test_themes(tmp_path: Path, theme: str) -> None:
    assert load_config(write(tmp_path, f'theme = "{theme}"'), env={}).theme == theme


def test_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'server = "https://a.example"')
    assert config_path({"PENMAIL_CONFIG": str(path)}) == path
    assert load_config(env={"PENMAIL_CONFIG": str(path)}).server == "https://a.example"
    assert config_path({}) == Path(platformdirs.user_config_path("penmail")) / "config.toml"


def test_home_is_expanded(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'download_dir = "~/x"'), env={})
    assert config.download_dir == Path("~/x").expanduser()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('server = "ftp://x"', "server must be an https:// URL, not 'ftp://x'."),
        ('server = "http://pen.example"', "server must be an https:// URL"),
        ('server = "https://"', "server must be an https:// URL"),
        ('server = "https://ann:pw@pen.example"', "server must not contain a user name or password"),
        ('server = "https://pen.example:99999"', "server must be an https:// URL"),
        ("server = 3", "server must be a string, not an integer."),
        ("server = true", "server must be a string, not true or false."),
        ('email = "ann"', "email 'ann' is not a valid e-mail address"),
        ("email = ['a@b.example']", "email must be a string, not a list."),
        ('ca_file = "missing.pem"', "ca_file names"),
        ('password_command = "pass \'x"', "password_command cannot be split into words"),
        ('password_command = "  "', "password_command is empty"),
        ('theme = "Not A Theme"', "theme must be a theme name"),
        ("foo = 1", "'foo' is not a known setting"),
        ("foo = 1\nbar = 2", "'foo', 'bar' are not known settings"),
        ('sever = "https://a.example"', "'sever' is not a known setting (did you mean 'server'? the settings are"),
        ("path = 'x'", "'path' is not a known setting"),  # Config's own fields are not settings
        ("keys = 1", "keys must be a table ([keys]), not an integer."),
        ("[keys]\nquit = 1", "keys.quit must be a key name"),
        ("[keys]\nquit = []", "keys.quit must be a key name"),
        ('[keys]\nquit = "ctrl q"', "keys.quit has 'ctrl q', which is not a key name."),
        ('[keys]\n"bad id!" = "q"', "keys has 'bad id!', which is not an action name."),
        ("ui = 1", "ui must be a table ([ui]), not an integer."),
        ("[ui]\nanimations = 'yes'", "ui.animations must be true or false, not a string."),
        ("[ui]\nsparkles = true", "[ui] has 'sparkles', which penmail does not know (it knows animations)"),
        ("[ui]\nanimation = true", "[ui] has 'animation', which penmail does not know (did you mean 'animations'?"),
        ("[ui]\nanimations = 1", "ui.animations must be true or false, not an integer."),
        ('email = "ann"\nserver = "ftp://x"', "server must be an https:// URL"),  # the first key first
        ("ca_file = 3", "ca_file must be a string, not an integer."),
        ('server = "https://a.example\\u0007"', "server must not contain control characters."),
    ],
)
def test_errors_name_key_and_file(tmp_path: Path, body: str, expected: str) -> None:
    assert expected in error_for(tmp_path, body)


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    message = error_for(tmp_path, 'server = "https://a.example"\ntheme = \nemail = "a@b.example"\n')
    assert "line 2 is not valid TOML" in message
    message = error_for(tmp_path, 'server = "https://a.example"\ntheme =')
    assert "line 2 is not valid TOML" in message
    message = error_for(tmp_path, 'theme = "a"\ntheme = "b"\n')
    assert "line 2 is not valid TOML" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'server = "\xff"')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, env={})


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path, env={})


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(path, env={})


def test_state_dir_honours_env_and_is_private(tmp_path: Path) -> None:
    target = tmp_path / "state" / "penmail"
    assert state_dir({"PENMAIL_STATE_DIR": str(target)}) == target
    assert target.is_dir()
    assert (target.stat().st_mode & 0o777) == 0o700


def test_a_file_checked_before_is_read_again_without_pydantic(tmp_path: Path) -> None:
    """tui.config.cache: the second start with the same file skips the models (and their
    import); a changed file is checked again, and a refused one is never remembered."""
    import subprocess
    import sys

    path = write(tmp_path, 'server = "https://a.example/"\nemail = "Ann@Pen.Example"\ndownload_dir = "dl"\n'
                           '[ui]\nanimations = true\n[imap]\nhost = "h"\n')
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    probe = ("import sys\nfrom tui.config import ConfigError, load_config\n"
             "try:\n    print(repr(load_config(sys.argv[1], env={})), 'pydantic' in sys.modules)\n"
             "except ConfigError as e:\n    print(e)\n")

    def start() -> str:
        done = subprocess.run([sys.executable, "-c", probe, str(path)], env=env, capture_output=True, text=True,
                              timeout=60, cwd=Path(__file__).resolve().parents[2])
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    first, second = start(), start()
    assert first.endswith(" True") and second.endswith(" False")
    assert first[:-5] == second[:-6] and "email='Ann@pen.example'" in second and "animations=True" in second
    assert f"download_dir=PosixPath('{tmp_path / 'dl'}')" in second and "imap={'host': 'h'}" in second
    cache = tmp_path / "cache" / "penmail" / "settings-checked.json"
    assert cache.stat().st_mode & 0o777 == 0o600
    path.write_text('server = "http://a.example"\n', encoding="utf-8")
    assert start() == f"In {path}, server must be an https:// URL, not 'http://a.example'."
    assert start() == f"In {path}, server must be an https:// URL, not 'http://a.example'."
    assert "http://a.example" not in cache.read_text(encoding="utf-8")
