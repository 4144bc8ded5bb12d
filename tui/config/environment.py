"""The environment penmail reads, taken once when the `penmail` command starts and handed
down (``env`` arguments) to the settings, the app and the line-mode commands: nothing below
the command decides for itself to look at ``os.environ``.  ``VARIABLES`` names the ones
penmail itself reads (besides EDITOR, VISUAL, NO_COLOR and TERM).

Two are read where they are used, not from the copy: PENMAIL_STATE_DIR (``tui.config.state_dir``;
`penmail demo` sets it for its run, tests set it per test) and the intercept test hooks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

VARIABLES = {
    "PENMAIL_CONFIG": "the settings file, instead of the platform's config folder's config.toml",
    "PENMAIL_STATE_DIR": "the folder for drafts, the address book and sign-ins (tests and the demo)",
    "PENMAIL_PASSWORD": "the PEN password, after the keyring and password_command",
    "PENMAIL_IMAP_PASSWORD": "`penmail intercept --imap`'s password, after password_command and the keyring",
    "PENMAIL_DEBUG": "line mode: an unexpected error shows its traceback",
    "PENMAIL_TEST_LOCK_SECONDS": "tests only: how long intercept waits for the Sent folder's lock",
    "PENMAIL_TEST_EXIT_AFTER_APPEND": "tests only: intercept exits right after placing a message",
}


def read_environment(source: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """A read-only copy of the environment as it is now (``source``, else ``os.environ``)."""
    return MappingProxyType(dict(os.environ if source is None else source))
