"""Web pages for the link of the notification e-mail: a guest (or a member) reads, downloads
and replies in any browser, text browsers too; no JavaScript anywhere. Server-rendered with
Jinja2 (autoescaped), one small stylesheet, mounted beside the API by `install(app)`."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    from pen_server.web import compose, pages, reading

    for module in (pages, reading, compose):
        app.include_router(module.router)
