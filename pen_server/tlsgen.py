"""A local certificate authority and a server certificate, for development and the demo."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pen_server.private import make_private_dir, write_private


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pen-server local CA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _a_label(host: str) -> str:
    """An internationalised host name in the ASCII form certificates carry."""
    if host.isascii():
        return host
    try:
        import idna
    except ImportError:  # pragma: no cover - idna comes with email-validator
        return host.encode("idna").decode("ascii")
    return idna.encode(host, uts46=True).decode("ascii")


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    """Each host in the forms that clients check: a host name as a DNS name; an IP address
    as an IP address (curl, Python, browsers) and also as a DNS name, bracketed for IPv6 as
    a URL writes it, since w3m compares the URL's host with DNS names only."""
    names: dict[x509.GeneralName, None] = {}
    for host in hosts:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            names[x509.DNSName(_a_label(host))] = None
            continue
        names[x509.IPAddress(ip)] = None
        names[x509.DNSName(str(ip) if ip.version == 4 else f"[{ip}]")] = None
    return list(names)


def make_tls(tls_dir: Path, hosts: list[str]) -> None:
    """Write ca.pem, ca.key, server.pem and server.key (each 0600, in a 0700 folder) for the
    given host names and IPs (the first is the certificate's common name)."""
    make_private_dir(tls_dir)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("pen-server local CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    # Valid from five minutes ago (a client's clock a little behind), 825 days in all: the
    # most Apple's platforms take, and what testssl rates as no finding.
    start = now - timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(_name(_a_label(hosts[0]))).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    pkcs8, plain = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    write_private(tls_dir / "ca.pem", ca.public_bytes(pem))
    write_private(tls_dir / "ca.key", ca_key.private_bytes(pem, pkcs8, plain))
    write_private(tls_dir / "server.pem", cert.public_bytes(pem))
    write_private(tls_dir / "server.key", key.private_bytes(pem, pkcs8, plain))
