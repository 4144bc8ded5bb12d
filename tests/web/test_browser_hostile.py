"""Every string of tests/data/hostile.json, and script payloads of our own that set
window.__pwned, through every field a page shows (subject, names, bodies as text and as
HTML, file names), read in Chromium: no script runs, none needed the CSP to be stopped
(the console shows no CSP or sandbox report), and each page keeps its structure."""

from __future__ import annotations

from urllib.parse import quote

from pen_server.devstack import add_user
from tests.conftest import PASSWORD

PAYLOADS = [
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=1">',
    "'><svg onload=window.__pwned=1>",
    "</title><script>window.__pwned=1</script>",
    "</textarea><script>window.__pwned=1</script>",
    "javascript:window.__pwned=1",
    "{{ 7*7 }} {% raw %}${7*7}",
]
HTML_PAYLOADS = [
    '<img src=x onerror="window.__pwned=1"><p>img</p>',
    '<a href="javascript:window.__pwned=1">js link</a>',
    '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
    '<form action="https://evil.example/"><button>go</button></form>',
    '<style>@import url(https://evil.example/x.css)</style><link rel=stylesheet href=https://evil.example/y.css>',
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__pwned=1></style></mglyph></table></mtext></math>",
    '<base href="https://evil.example/"><a href="/relative">rel</a>',
    '<meta http-equiv="refresh" content="0;url=javascript:window.__pwned=1">',
    '<svg><script>window.__pwned=1</script></svg><object data="javascript:window.__pwned=1"></object>',
    '<p style="background:url(https://tracker.example/p.gif)">styled</p><img src="https://tracker.example/t.gif">',
    '<a href="https://ok.example/" onclick="window.__pwned=1" onmouseover="window.__pwned=1">ok link</a>',
]


def _strings(hostile: dict) -> list[str]:
    texts = [v for k, v in hostile["text"].items() if not k.startswith("_")]
    return PAYLOADS + texts


def _check(tab, page, where: str) -> None:
    assert page.evaluate("window.__pwned") is None, where
    for frame in page.frames[1:]:
        try:
            assert frame.evaluate("window.__pwned") is None, where
        except AssertionError:
            raise
        except Exception:  # a frame without scripts at all: nothing could have run there
            pass
    assert tab.csp_reports() == [], f"{where}: {tab.csp_reports()}"
    assert page.locator("h1").count() == 1, where
    assert page.locator("main").count() == 1 and page.locator("footer.site").count() == 1, where


def test_hostile_strings_in_every_field_run_no_script(pen, tab, hostile):
    sender = "eve-hostile@abc.example"
    add_user(pen.data, sender, '"><script>window.__pwned=1</script> Eve', PASSWORD)
    reader = "rita-hostile@abc.example"
    add_user(pen.data, reader, "Rita <b>Reader</b>", PASSWORD)
    strings = _strings(hostile)
    html_bodies = list(hostile["html"].values()) + HTML_PAYLOADS
    html_bodies[list(hostile["html"]).index("many_links_note")] = "".join(
        f'<a href="https://x.example/{i}">{i}</a> ' for i in range(2000))
    sent_ids = []
    bodies = {}
    with pen.as_user(sender) as c:
        names = [n for n in hostile["filenames"] if n]
        files = []
        for name in names:
            r = c.post(f"/uploads?filename={quote(name, safe='')}", content=b"data",
                       headers={"Content-Type": "text/html"})
            assert r.status_code == 201, (name, r.text)
            files.append(r.json()["id"])
        for i, text in enumerate(strings):
            html = html_bodies[i % len(html_bodies)]
            payload = {"to": [{"email": reader, "name": text[:200]}], "cc": [{"email": "cat@abc.example",
                       "name": PAYLOADS[i % len(PAYLOADS)]}], "subject": text[:998], "body_text": text,
                       "body_html": html, "attachments": files if i == 0 else []}
            r = c.post("/messages", json=payload, headers={"Idempotency-Key": f"hostile-{i}"})
            if r.status_code == 422:  # the API refuses it (control characters): no page can show it
                payload["subject"] = payload["to"][0]["name"] = "refused by the API"
                payload["cc"] = []
                r = c.post("/messages", json=payload, headers={"Idempotency-Key": f"hostile-b-{i}"})
            assert r.status_code == 201, r.text
            sent_ids.append(r.json()["id"])
            bodies[r.json()["id"]] = html
    assert len(sent_ids) >= 40

    page = tab.page
    base = pen.process.url.replace("127.0.0.1", "localhost")
    page.goto(base + "/login")
    page.get_by_label("E-mail address").fill(reader)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/")
    _check(tab, page, "inbox")
    page.get_by_role("link", name="Older messages").click()
    _check(tab, page, "inbox, page 2")
    for mid in sent_ids:
        page.goto(f"{base}/m/{mid}")
        _check(tab, page, f"message {mid}")
    page.goto(f"{base}/m/{sent_ids[0]}")
    assert page.locator(".files li").count() == len([n for n in hostile["filenames"] if n])
    for mid in sent_ids[:len(PAYLOADS)]:
        page.goto(f"{base}/m/{mid}/reply?all=1")
        _check(tab, page, f"reply form {mid}")
        page.goto(f"{base}/m/{mid}/body")
        assert tab.csp_reports() == []
    for mid in sent_ids:  # what the body's frame is served: the sanitiser left nothing active
        served = tab.context.request.get(f"{base}/m/{mid}/body", headers={"Sec-Fetch-Dest": "iframe"}).text()
        text = served.split("<main>", 1)[1].lower()  # the body as the frame shows it (the title is escaped text)
        assert "<script" not in text and "onerror" not in text and "javascript:" not in text
        for active in ("<img", "<link", "<style", "<base", "<form", "<iframe", "<object", "<svg", "<math",
                       "http-equiv", " src=", "url(", ' href="/', " style="):
            assert active not in text, (active, text[:300])
    # Nothing went out to any other host: every request of the page stayed on the PEN.
    assert all(r.url.startswith(base) for r in tab.requests), {r.url for r in tab.requests if not r.url.startswith(base)}
