"""The [storage] settings: PEN_STORAGE_* over pen-server.toml, the secret from a private file
(refused with a sentence when others may read it), never in a repr, and one sentence for
each thing that cannot work. Fast: a settings file in a temporary folder, no server."""

from __future__ import annotations

import pytest

from pen_devstack import run_cli
from pen_server.settings import SettingsError, load_settings

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def folder(tmp_path, storage: str, limits: str = ""):
    (tmp_path / "pen-server.toml").write_text(f"[storage]\n{storage}\n" + (f"[limits]\n{limits}\n" if limits else ""))
    return tmp_path


def test_the_table_and_the_environment_over_it(tmp_path):
    data = folder(tmp_path, 'url = "s3://pen-files/abc"\nendpoint = "https://s3.example:9000"\n'
                            f'access_key_id = "AKIDEXAMPLE"\nsecret_access_key = "{SECRET}"')
    st = load_settings(data, env={}).storage
    assert (st.bucket, st.prefix, st.region) == ("pen-files", "abc", "us-east-1")
    assert st.endpoint == "https://s3.example:9000"
    assert (st.access_key_id, st.secret_access_key) == ("AKIDEXAMPLE", SECRET)
    st = load_settings(data, env={"PEN_STORAGE_URL": "s3://other", "PEN_STORAGE_REGION": "eu-central-1"}).storage
    assert (st.bucket, st.prefix, st.region, st.endpoint) == ("other", "", "eu-central-1", "https://s3.example:9000")
    assert SECRET not in repr(load_settings(data, env={}))
    assert load_settings(folder(tmp_path, ""), env={}).storage.url == ""  # the data folder, as before


def test_the_secret_from_a_private_file_only(tmp_path):
    secret = tmp_path / "s3-secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    data = folder(tmp_path, 'url = "s3://b"\naccess_key_id = "AKIDEXAMPLE"\nsecret_access_key_file = "s3-secret"')
    assert load_settings(data, env={}).storage.secret_access_key == SECRET
    secret.chmod(0o644)
    with pytest.raises(SettingsError, match=r"may be read by others; make it private \(chmod 600 .*s3-secret\)"):
        load_settings(data, env={})
    # `pen-server run` says the same in one sentence, and shows no part of the key.
    with pytest.raises(RuntimeError) as refused:
        run_cli("run", "--data", str(data))
    assert "chmod 600" in str(refused.value) and SECRET not in str(refused.value)
    env = {"PEN_STORAGE_SECRET_ACCESS_KEY_FILE": str(tmp_path / "missing")}
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings(data, env=env)


@pytest.mark.parametrize(("storage", "limits", "sentence"), [
    ('url = "https://bucket/x"', "", "must look like s3://bucket/prefix"),
    ('url = "s3:///x"', "", "must look like s3://bucket/prefix"),
    ('url = "s3://b"\nendpoint = "ftp://host"', "", "must be an http:// or https:// address"),
    ('url = "s3://b"\naccess_key_id = "AKID"', "", "need both access_key_id and secret_access_key"),
    ('url = "s3://b"\nregion = 5', "", "storage.region must be text"),
    ('url = "s3://b"', f"max_upload_bytes = {6 << 30}", "must be at most 5 GiB"),
])
def test_settings_that_cannot_work_are_one_sentence(tmp_path, storage, limits, sentence):
    with pytest.raises(SettingsError, match=sentence):
        load_settings(folder(tmp_path, storage, limits), env={})
