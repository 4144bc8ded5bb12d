"""Attachment bytes in an S3-compatible bucket ([storage] url = "s3://bucket/prefix"), through
obstore (the Rust object_store crate: multipart uploads with bounded buffers, retries,
request signing). Blobs are PREFIX/blobs/ab/cd/<sha256>; an upload streams to
PREFIX/tmp/upload-<random> in 8 MiB parts (at most two in flight: memory stays flat
whatever the size), and is copied under its hash server-side once its rows are committed.

A whole download is one GET through obstore, streamed in 1 MiB pieces as the client takes
them; a range is one GET of a presigned URL through httpx, which takes a range answered by
206 or, as rclone's `serve s3` 1.75 answers, by 200 with the Content-Range asked for
(obstore refuses that answer)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from pen_server.settings import StorageSettings
from pen_server.storage import READ_CHUNK, BlobStore, StoreUnavailable, TempBlob, blob_key, temp_name

log = logging.getLogger("pen_server")
# httpx logs each request's URL at INFO: a presigned URL reads the blob for minutes.
logging.getLogger("httpx").setLevel(logging.WARNING)
PART_SIZE = 8 << 20
PARTS_IN_FLIGHT = 2
SIGNED_FOR = timedelta(minutes=10)
MISSING = "That file is missing from the server's storage; tell its administrator."
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")

try:
    import obstore
    from obstore.exceptions import BaseError as ObstoreError
    from obstore.store import S3Store
except ImportError:  # the embedded default needs none of it
    obstore = None  # type: ignore[assignment]


def _unavailable(what: str, exc: BaseException) -> StoreUnavailable:
    log.warning("object store: %s failed: %s", what, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return StoreUnavailable()


_FAILURES: tuple[type[BaseException], ...] = (OSError,) if obstore is None else (ObstoreError, OSError)
_READ_FAILURES: tuple[type[BaseException], ...] = (httpx.HTTPError, *_FAILURES)


def _why(exc: BaseException, bucket: str) -> str:
    """What a failed request says about the store, in a few words (the details go to the log)."""
    text = str(exc)
    if "error sending request" in text or "connect" in text.lower():
        return "does not answer (no connection)"
    if "404" in text or isinstance(exc, FileNotFoundError):
        return f"has no bucket {bucket!r}"
    if "403" in text or "401" in text or type(exc).__name__ in ("PermissionDeniedError", "UnauthenticatedError"):
        return "refuses the access key"
    return f"does not answer as it should ({type(exc).__name__})"


class _S3Temp(TempBlob):
    def __init__(self, store: S3BlobStore):
        self.store = store
        self.name = temp_name()
        self.key = f"tmp/{self.name}"
        try:
            self._writer: Any = obstore.open_writer(store.s3, self.key, buffer_size=PART_SIZE,
                                                    max_concurrency=PARTS_IN_FLIGHT)
        except _FAILURES as exc:
            raise _unavailable("starting an upload", exc) from None
        self._open, self._gone = True, False

    def write(self, chunk: bytes) -> None:
        try:
            self._writer.write(chunk)
        except _FAILURES as exc:
            raise _unavailable("an upload's part", exc) from None

    def finish(self) -> None:
        try:
            self._writer.close()
            self._open = False
        except _FAILURES as exc:
            raise _unavailable("completing an upload", exc) from None

    def discard(self) -> None:
        """Never raises: what cannot be removed now, the clean-up removes after a day."""
        if self._gone:
            return
        self._gone = True
        if self._open:
            self._open = False
            try:  # leaving the writer with an error aborts its multipart upload
                self._writer.__exit__(RuntimeError, RuntimeError("discarded"), None)
            except _FAILURES:
                pass
        try:
            self.store._delete(self.key)
        except StoreUnavailable:
            pass  # logged by _delete


class S3BlobStore(BlobStore):
    def __init__(self, conf: StorageSettings):
        if obstore is None:
            from pen_server.settings import SettingsError

            raise SettingsError("Attachments in S3 need obstore: pip install 'penmail[s3]'.")
        self.conf = conf
        options: Any = {"connect_timeout": "5s", "timeout": "120s"}
        credentials: dict[str, Any] = {}
        if conf.endpoint.startswith("http://"):
            options["allow_http"] = True
        if conf.endpoint:
            credentials["endpoint"] = conf.endpoint
        if conf.access_key_id:
            credentials.update(access_key_id=conf.access_key_id, secret_access_key=conf.secret_access_key)
        try:
            self.s3 = S3Store(conf.bucket, prefix=conf.prefix or None, region=conf.region, client_options=options,
                              retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=15),
                                            "backoff": {"init_backoff": timedelta(milliseconds=100),
                                                        "max_backoff": timedelta(seconds=2), "base": 2}},
                              **credentials)
        except (ValueError, ObstoreError) as exc:
            from pen_server.settings import SettingsError

            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise SettingsError(f"The [storage] settings cannot be used ({first}).") from None
        self._http: httpx.AsyncClient | None = None

    def _delete(self, key: str) -> None:
        try:
            obstore.delete(self.s3, key)
        except FileNotFoundError:
            pass
        except _FAILURES as exc:
            raise _unavailable(f"deleting {key}", exc) from None

    def new_temp(self) -> TempBlob:
        return _S3Temp(self)

    def commit_temp(self, temp: TempBlob, sha256: str) -> None:
        assert isinstance(temp, _S3Temp)
        if not self.exists(sha256):
            try:
                obstore.copy(self.s3, temp.key, "blobs/" + blob_key(sha256))
            except _FAILURES as exc:
                raise _unavailable("putting an upload in place", exc) from None
        temp.discard()

    def size(self, sha256: str) -> int | None:
        try:
            return obstore.head(self.s3, "blobs/" + blob_key(sha256))["size"]
        except FileNotFoundError:
            return None
        except _FAILURES as exc:
            raise _unavailable("looking up a blob", exc) from None

    async def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes | memoryview]:
        key = "blobs/" + blob_key(sha256)
        if start == 0 and end is None:  # the whole blob: obstore's GET, streamed in Rust off the GIL
            try:
                answer = await obstore.get_async(self.s3, key)
                async for piece in answer.stream(min_chunk_size=READ_CHUNK):
                    yield memoryview(piece)  # the buffer itself, not a copy
            except FileNotFoundError:
                raise StoreUnavailable(MISSING) from None
            except _FAILURES as exc:
                raise _unavailable("reading a blob", exc) from None
            return
        async for part in self._read_range(key, start, end):
            yield part

    async def _read_range(self, key: str, start: int, end: int | None) -> AsyncIterator[bytes | memoryview]:
        """A range, through a presigned URL and httpx: obstore refuses a range answered with
        200 and the Content-Range asked for, as rclone's `serve s3` (1.75) answers."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5),
                                           limits=httpx.Limits(max_keepalive_connections=32))
        asked = f"bytes={start}-{'' if end is None else end}"
        try:
            url = await obstore.sign_async(self.s3, "GET", key, SIGNED_FOR)
            async with self._http.stream("GET", url, headers={"Range": asked}) as answer:
                if answer.status_code == 404:
                    raise StoreUnavailable(MISSING)
                match = _CONTENT_RANGE.match(answer.headers.get("content-range", ""))
                if answer.status_code not in (200, 206) or not match or int(match[1]) != start or (
                        end is not None and int(match[2]) != end):
                    raise StoreUnavailable(f"The file storage answered {answer.status_code} "
                                           f"({answer.headers.get('content-range')!r}) to a range of a blob.")
                async for piece in answer.aiter_raw():
                    yield piece
        except _READ_FAILURES as exc:
            raise _unavailable("reading a blob", exc) from None

    def remove(self, sha256: str) -> None:
        self._delete("blobs/" + blob_key(sha256))

    def clean_temp(self, older_than: float) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        removed = 0
        try:
            for batch in obstore.list(self.s3, "tmp/", chunk_size=500):
                for meta in batch:
                    if meta["last_modified"] < cutoff:
                        self._delete(meta["path"])
                        removed += 1
        except _FAILURES as exc:
            raise _unavailable("listing unfinished uploads", exc) from None
        return removed

    async def check(self) -> None:
        try:
            await obstore.list_with_delimiter_async(self.s3)
        except _FAILURES as exc:
            log.warning("object store check: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise StoreUnavailable(f"The object store {self.describe()} {_why(exc, self.conf.bucket)}; "
                                   "check [storage] in pen-server.toml.") from None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def describe(self) -> str:
        return f"{self.conf.url} at {self.conf.endpoint or 'AWS ' + self.conf.region}"
