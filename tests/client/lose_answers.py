"""`python -m tests.client.lose_answers ARGS...`: penmail's command line, but the PEN's
answers to the first $PENMAIL_TEST_LOSE POST /messages of this process never arrive (the
PEN gets each request and acts on it; the client sees a read timeout), as when the
connection drops at the worst moment. Not a test module (no test_ prefix)."""

from __future__ import annotations

import json
import os
import sys

import httpx

import tui.pen_client
from tui.cli import main


class LoseAnswers(httpx.AsyncBaseTransport):
    """The PEN gets the first ``lose`` POST /messages and answers, but the answers never arrive.
    Records each send's Idempotency-Key and upload ids, and counts the uploads."""

    def __init__(self, ca_file, lose: int = 1) -> None:
        self.inner = httpx.AsyncHTTPTransport(verify=tui.pen_client.tls_context(ca_file))
        self.lose = lose
        self.keys: list[str] = []
        self.attachments: list[list[str]] = []
        self.uploads = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sending = request.method == "POST" and request.url.path.endswith("/messages")
        if request.method == "POST" and request.url.path.endswith("/uploads"):
            self.uploads += 1
        if sending:
            self.attachments.append(json.loads(await request.aread()).get("attachments", []))
        response = await self.inner.handle_async_request(request)
        if sending:
            self.keys.append(request.headers["Idempotency-Key"])
            if len(self.keys) <= self.lose:
                await response.aread()
                await response.aclose()
                raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _run() -> int:
    init = tui.pen_client.PenClient.__init__
    lose = int(os.environ.get("PENMAIL_TEST_LOSE", "1"))

    def losing_init(self, server, *, ca_file=None, transport=None, **kw):
        init(self, server, ca_file=ca_file, transport=transport or LoseAnswers(ca_file, lose), **kw)

    tui.pen_client.PenClient.__init__ = losing_init  # type: ignore[method-assign]
    return main()


if __name__ == "__main__":
    sys.exit(_run())
