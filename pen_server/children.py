"""Processes that pen-server starts (the API processes of `run --workers N`, the bounce
port's) end with the process that started them."""

from __future__ import annotations

import contextlib
import os
import signal


def die_with(parent: int) -> None:
    """Linux: this process gets SIGTERM when `parent` dies (even by kill -9), so none is left
    holding a port, or answering on it for a server that is gone."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before that took hold
        os._exit(0)
