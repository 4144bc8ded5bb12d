"""DKIM keys and signatures for notifications (RFC 6376, through dkimpy).

Keys live in `DIR/dkim/DOMAIN/SELECTOR.pem` (RSA-2048, mode 0600); `DIR/dkim/DOMAIN/current`
names the selector that signs. The signer looks at that file on every delivery pass, so
rotation needs no restart and leaves no gap: make the new key (`pen-server dkim init` with a
new selector), publish its record, wait until DNS serves it, then `pen-server dkim use` it;
the old key stays on disk until `pen-server dkim remove`, so mail signed with it still
verifies while its record is published.

Speed, for a fan-out of 1,000 notifications: dkimpy computes the signature with Python's
own big-number arithmetic (about 6 ms per RSA-2048 signature here), so the RSA step alone is
handed to OpenSSL through `cryptography`, which gives the very same bytes (PKCS#1 v1.5 is
deterministic) in a twentieth of the time; dkimpy's parsed keys and relaxed-canonical
headers are remembered (the same for every notification of a message), and the
e-mail is read in one quick pass (see `_Notification`). Two functions of the `dkim`
module are replaced in this process, with results identical to its own (tests/server/test_dkim.py).
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

log = logging.getLogger("pen_server.dkim")

KEY_BITS = 2048
# What the notification has of RFC 6376's list, and the MIME headers. A header that an
# e-mail lacks is still named in h=, so nobody can add it on the way without breaking the
# signature (for a guest's notification that has no Reply-To, for instance).
SIGNED_HEADERS = ("from", "to", "cc", "subject", "date", "message-id", "reply-to", "in-reply-to",
                  "references", "mime-version", "content-type", "content-transfer-encoding",
                  "auto-submitted", "x-pen-message")
_SELECTOR = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")


class DkimError(ValueError):
    """A selector, domain or key that cannot be used; the message is one sentence."""


def is_ip_literal(domain: str) -> bool:
    try:
        ipaddress.ip_address(domain.strip("[]"))
        return True
    except ValueError:
        return False


def checked_domain(domain: str) -> str:
    domain = (domain or "").strip().rstrip(".").lower()
    if is_ip_literal(domain):
        raise DkimError(f"DKIM needs a domain name, not the IP address {domain!r}; "
                        "send from an address on the PEN's or the company's domain.")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise DkimError(f"{domain!r} is not a domain name.") from None
    if not _DOMAIN.fullmatch(domain):
        raise DkimError(f"{domain!r} is not a domain name.")
    return domain


def checked_selector(selector: str) -> str:
    selector = (selector or "").strip().lower()
    if not _SELECTOR.fullmatch(selector):
        raise DkimError(f"A selector is one DNS label (letters, digits and hyphens), not {selector!r}.")
    return selector


def domain_dir(data_dir: Path, domain: str) -> Path:
    return Path(data_dir) / "dkim" / checked_domain(domain)


def key_path(data_dir: Path, domain: str, selector: str) -> Path:
    return domain_dir(data_dir, domain) / f"{checked_selector(selector)}.pem"


def selectors(data_dir: Path, domain: str) -> list[str]:
    folder = domain_dir(data_dir, domain)
    return sorted(p.stem for p in folder.glob("*.pem")) if folder.is_dir() else []


def current(data_dir: Path, domain: str) -> str | None:
    """The selector that signs for `domain`, or None."""
    try:
        name = (domain_dir(data_dir, domain) / "current").read_text(encoding="ascii").strip()
    except (OSError, UnicodeError):
        return None
    return name or None


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_key(data_dir: Path, domain: str, selector: str) -> bool:
    """A new RSA-2048 key for `domain` under `selector`. The first key of a domain becomes
    its current one at once; returns whether it did."""
    folder = domain_dir(data_dir, domain)
    path = key_path(data_dir, domain, selector)
    if path.exists():
        raise DkimError(f"The selector {path.stem!r} of {folder.name} has a key already; "
                        "choose a new selector for a new key.")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    _write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    if current(data_dir, domain) is None:
        use(data_dir, domain, selector)
        return True
    return False


def use(data_dir: Path, domain: str, selector: str) -> None:
    """Sign with `selector` from the next delivery pass on (an atomic switch)."""
    path = key_path(data_dir, domain, selector)
    if not path.is_file():
        raise DkimError(f"There is no key for the selector {path.stem!r} of {path.parent.name}; "
                        "make it with 'pen-server dkim init' first.")
    tmp = path.parent / "current.tmp"
    tmp.write_text(path.stem + "\n", encoding="ascii")
    os.replace(tmp, path.parent / "current")


def remove(data_dir: Path, domain: str, selector: str) -> None:
    path = key_path(data_dir, domain, selector)
    if current(data_dir, domain) == path.stem:
        raise DkimError(f"The selector {path.stem!r} signs the notifications now; "
                        "make another one current with 'pen-server dkim use' first.")
    if not path.is_file():
        raise DkimError(f"There is no key for the selector {path.stem!r} of {path.parent.name}.")
    path.unlink()


def public_value(data_dir: Path, domain: str, selector: str) -> str:
    """The TXT record's value: `v=DKIM1; k=rsa; p=...`."""
    key = serialization.load_pem_private_key(key_path(data_dir, domain, selector).read_bytes(), None)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def record_name(domain: str, selector: str) -> str:
    return f"{checked_selector(selector)}._domainkey.{checked_domain(domain)}"


def zone_lines(domain: str, selector: str, value: str, pen_host: str | None = None) -> list[str]:
    """What the administrator publishes: the TXT record in zone-file form (split into
    strings of at most 255 characters, as DNS requires), and, when the PEN has a host name
    of its own, the CNAME form with which a company delegates the record to the PEN."""
    name = record_name(domain, selector)
    chunks = [value[i:i + 250] for i in range(0, len(value), 250)]
    lines = [f"Publish this TXT record in the DNS of {checked_domain(domain)}:",
             f"{name}. IN TXT ( " + " ".join(f'"{c}"' for c in chunks) + " )"]
    if pen_host and not is_ip_literal(pen_host) and "." in pen_host:
        host = pen_host.lower().rstrip(".")
        if host != checked_domain(domain):
            target = f"{checked_selector(selector)}.{checked_domain(domain)}._domainkey.{host}"
            lines += ["", "Or, to leave the key record to the PEN's operator, the company publishes this "
                      "CNAME instead,", f"{name}. IN CNAME {target}.",
                      f"and the PEN's zone holds the TXT record above under {target}."]
    return lines


# -- signing ---------------------------------------------------------------------------------

_dkimpy_rsa_sign = dkim.RSASSA_PKCS1_v1_5_sign
_openssl_keys: dict[int, rsa.RSAPrivateKey] = {}
_keys_lock = threading.Lock()


def _openssl_rsa_sign(hash_, private_key):
    """dkimpy's RSASSA-PKCS1-v1_5 signing step, done by OpenSSL for SHA-256 digests."""
    digest = hash_.digest()
    if len(digest) != 32:
        return _dkimpy_rsa_sign(hash_, private_key)
    n = private_key["modulus"]
    with _keys_lock:
        key = _openssl_keys.get(n)
        if key is None:
            public = rsa.RSAPublicNumbers(private_key["publicExponent"], n)
            key = rsa.RSAPrivateNumbers(
                private_key["prime1"], private_key["prime2"], private_key["privateExponent"],
                private_key["exponent1"], private_key["exponent2"], private_key["coefficient"],
                public).private_key()
            if len(_openssl_keys) > 16:
                _openssl_keys.clear()
            _openssl_keys[n] = key
    return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


dkim.RSASSA_PKCS1_v1_5_sign = _openssl_rsa_sign
# dkimpy parses the PEM key again for every signature: the same few keys, parsed once.
dkim.parse_pem_private_key = functools.lru_cache(maxsize=8)(dkim.parse_pem_private_key)


# A message's own headers are used for each of its notifications, so they stay in; the
# Message-IDs, one per notification, pass through. 32 entries of a To that the largest
# message the API takes can have (5,000 addresses, some 175 KB) stay under 12 MB.
@functools.lru_cache(maxsize=32)
def _relaxed_header(name: bytes, value: bytes) -> tuple:
    return tuple(_Relaxed.canonicalize_headers([(name, value)])[0])


_Relaxed = dkim.canonicalization.Relaxed


class _RememberingRelaxed(_Relaxed):
    """Relaxed canonicalization that remembers its headers: every notification of a message
    has the same From, To, Cc, Subject and Date, and a To of 1,000 addresses is 35 KB."""

    @staticmethod
    def canonicalize_headers(headers):
        return [_relaxed_header(bytes(name), bytes(value)) for name, value in headers]


dkim.canonicalization.ALGORITHMS[b"relaxed"] = _RememberingRelaxed


_FOLD = re.compile(rb"\r\n(?=[ \t])")
_FIELD = re.compile(rb"([\x21-\x7e]+?):")


class _Notification(dkim.DKIM):
    """dkimpy's DKIM for an e-mail that we made: CRLF lines only. Its headers are taken
    unfolded, which relaxed canonicalization makes no different, and split here in one
    pass: dkimpy's own parser joins a folded header's lines by repeated concatenation
    (quadratic in their number; a To of 1,000 addresses has some 450) and runs a regular
    expression over every byte of the e-mail. Anything else goes to dkimpy's parser."""

    def set_message(self, message):
        super().set_message(message if b"\n" in message.replace(b"\r\n", b"") else None)
        if self.headers or not message:
            return
        head, sep, body = message.partition(b"\r\n\r\n")
        fields = []
        for line in _FOLD.sub(b"", head).split(b"\r\n"):
            name = _FIELD.match(line)
            if name is None:  # not a header line: let dkimpy judge the whole e-mail
                super().set_message(message)
                return
            fields.append([name.group(1), line[name.end():] + b"\r\n"])
        self.headers, self.body = fields, body if sep else b""


@dataclass
class _Loaded:
    selector: str
    stamp: tuple
    key: bytes


class Signer:
    """Signs finished notifications for the domain of the PEN's from_address."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self._keys: dict[str, _Loaded] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def _warn_once(self, key: str, text: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(text, *args)

    def key_for(self, domain: str) -> tuple[str, bytes] | None:
        """(selector, PEM) of the current key of `domain`, or None (with one log line)."""
        if is_ip_literal(domain):
            self._warn_once("ip:" + domain, "notifications are not DKIM-signed: the from_address is on the "
                            "IP address %s, not a domain; set a from_address on the PEN's domain", domain)
            return None
        try:
            selector = current(self.data_dir, domain)
        except DkimError as exc:
            self._warn_once("bad:" + domain, "notifications are not DKIM-signed: %s", exc)
            return None
        if selector is None:
            self._warn_once("none:" + domain, "notifications are not DKIM-signed: there is no DKIM key for %s; "
                            "make one with 'pen-server dkim init --domain %s'", domain, domain)
            return None
        path = key_path(self.data_dir, domain, selector)
        try:
            st = path.stat()
            stamp = (selector, st.st_mtime_ns, st.st_size, st.st_ino)
            with self._lock:
                loaded = self._keys.get(domain)
                if loaded is None or loaded.stamp != stamp:
                    loaded = self._keys[domain] = _Loaded(selector, stamp, path.read_bytes())
                    log.info("DKIM: signing for %s with the selector %s", domain, selector)
                    self._warned = {w for w in self._warned if not w.endswith(":" + domain)}
        except OSError as exc:
            self._warn_once("io:" + domain, "notifications are not DKIM-signed: cannot read %s (%s)", path, exc)
            return None
        return loaded.selector, loaded.key

    def sign(self, data: bytes, from_address: str) -> bytes:
        """`data` with a DKIM-Signature header in front, or unchanged when there is no key."""
        domain = from_address.rpartition("@")[2].lower()
        found = self.key_for(domain)
        if found is None:
            return data
        selector, pem = found
        try:
            header = _Notification(data).sign(selector.encode("ascii"), domain.encode("ascii"), pem,
                                              canonicalize=(b"relaxed", b"relaxed"),
                                              include_headers=[h.encode("ascii") for h in SIGNED_HEADERS])
        except (dkim.DKIMException, ValueError) as exc:
            # A broken key file must not stop delivery: the e-mail goes unsigned, said once.
            self._warn_once(f"sign:{selector}:{domain}", "notifications are not DKIM-signed: the key %s "
                            "of %s cannot sign (%s)", selector, domain, exc)
            return data
        return header + data
