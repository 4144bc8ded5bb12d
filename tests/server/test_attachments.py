"""Uploads and downloads: streaming, content addressing, limits, Range and If-Range."""

import base64
import hashlib
import os
import uuid
from urllib.parse import quote

import httpx


def upload(c: httpx.Client, name: str, data: bytes, content_type="application/pdf") -> httpx.Response:
    return c.post(f"/uploads?filename={quote(name, safe='')}", content=data, headers={"Content-Type": content_type})


def test_upload_send_download_with_range(pen, send):
    data = os.urandom(3 * (1 << 20) + 17)
    sha = hashlib.sha256(data).hexdigest()
    with pen.as_user("ann") as c:
        r = upload(c, "Résumé results.pdf", data)
        assert r.status_code == 201, r.text
        att = r.json()
        assert att["sha256"] == sha and att["size"] == len(data) and att["filename"] == "Résumé results.pdf"
    sent = send("ann", ["bob"], subject="with file", attachments=[att["id"]])
    assert sent["attachment_count"] == 1 and sent["attachments"][0]["sha256"] == sha
    url = f"/messages/{sent['id']}/attachments/{att['id']}"
    with pen.as_user("bob") as c:
        full = c.get(url)
        assert full.status_code == 200 and full.content == data
        h = full.headers
        assert h["etag"] == f'"{sha}"'
        assert h["repr-digest"] == f"sha-256=:{base64.b64encode(bytes.fromhex(sha)).decode()}:"
        assert h["accept-ranges"] == "bytes" and h["x-content-type-options"] == "nosniff"
        assert h["content-type"].startswith("application/pdf")
        assert h["content-disposition"] == ("attachment; filename=\"R_sum_ results.pdf\"; "
                                            "filename*=UTF-8''R%C3%A9sum%C3%A9%20results.pdf")
        part = c.get(url, headers={"Range": "bytes=1000-"})
        assert part.status_code == 206 and part.content == data[1000:]
        assert part.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
        same = c.get(url, headers={"Range": "bytes=1000-", "If-Range": f'"{sha}"'})
        assert same.status_code == 206
        changed = c.get(url, headers={"Range": "bytes=1000-", "If-Range": '"somethingelse"'})
        assert changed.status_code == 200 and changed.content == data
        past = c.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert past.status_code == 416 and past.json()["error"]["code"] == "range_not_satisfiable"
    with pen.as_user("cat") as c:  # not Cat's message
        assert c.get(url).status_code == 404


def test_several_ranges_or_odd_forms_get_the_whole_file(pen, send):
    """The contract: only bytes=N-, bytes=N-M and bytes=-N are served as a part; anything
    else (several ranges, merged or not) is 200 with the whole file, never multipart."""
    data = bytes(range(256)) * 40 + b"end"
    with pen.as_user("ann") as c:
        att = upload(c, "ranges.bin", data, "application/octet-stream").json()
    sent = send("ann", ["bob"], subject="ranges", attachments=[att["id"]])
    url = f"/messages/{sent['id']}/attachments/{att['id']}"
    with pen.as_user("bob") as c:
        for asked in ("bytes=0-0,2-3", "bytes=0-1,0-1", "bytes=5-9,", "bytes=,5-9", "bytes=0-0, 2-3, -1",
                      "bytes=0-4,10-14"):
            r = c.get(url, headers={"Range": asked})
            assert r.status_code == 200, (asked, r.status_code, r.headers.get("content-type"))
            assert r.content == data and "content-range" not in r.headers, asked
            assert r.headers["content-type"] == "application/octet-stream", asked
        for asked, start, end in (("bytes=2-5", 2, 5), ("bytes=10235-", 10235, len(data) - 1),
                                  ("bytes=-3", len(data) - 3, len(data) - 1)):
            r = c.get(url, headers={"Range": asked})
            assert r.status_code == 206 and r.content == data[start:end + 1], asked
            assert r.headers["content-range"] == f"bytes {start}-{end}/{len(data)}", asked


def test_identical_files_share_one_blob(pen):
    data = b"same bytes " + uuid.uuid4().bytes
    sha = hashlib.sha256(data).hexdigest()
    with pen.as_user("ann") as c:
        a = upload(c, "a.txt", data).json()
        b = upload(c, "b.txt", data).json()
    assert a["id"] != b["id"] and a["sha256"] == b["sha256"] == sha
    blobs = [p for p in (pen.data / "blobs").rglob("*") if p.is_file() and p.name == sha]
    assert len(blobs) == 1


def test_too_large_is_refused_before_the_body(pen):
    """Only the headers go out; the 413 must come back without a byte of the body."""
    import socket
    import ssl

    limit = 1 << 30
    token = pen.login("ann")["access_token"]
    ctx = ssl.create_default_context(cafile=pen.ca_file)
    with socket.create_connection(("127.0.0.1", pen.process.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall((f"POST /api/v1/uploads?filename=big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Length: {limit + 1}\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b'"too_large"' in body and str(limit).encode() in body


def test_length_required(pen):
    with pen.as_user("ann") as c:
        def chunks():
            yield b"abc"

        r = c.post("/uploads?filename=x.bin", content=chunks())  # chunked, no Content-Length
        assert r.status_code == 411 and r.json()["error"]["code"] == "length_required"


def test_hostile_filenames_stay_names(pen, hostile, send):
    ids = []
    with pen.as_user("ann") as c:
        for name in hostile["filenames"]:
            r = upload(c, name or "x", b"data for " + name.encode("utf-8", "replace"), "text/plain")
            assert r.status_code == 201, (name, r.text)
            ids.append(r.json()["id"])
        r = upload(c, "x", b"data", "text/html <script>")
        assert r.status_code == 201 and r.json()["content_type"] == "application/octet-stream"
    sent = send("ann", ["bob"], subject="many files", attachments=ids)
    root = (pen.data / "blobs").resolve()
    for p in (pen.data / "blobs").rglob("*"):
        assert p.resolve().is_relative_to(root)
    assert not (pen.data.parent / ".ssh").exists() and not (pen.data / "etc").exists()
    with pen.as_user("bob") as c:
        for att in sent["attachments"]:
            r = c.get(f"/messages/{sent['id']}/attachments/{att['id']}")
            assert r.status_code == 200
            cd = r.headers["content-disposition"]
            assert "\r" not in cd and "\n" not in cd and "/" not in cd.split("filename*=")[0]
