"""A DNS server on loopback for tests: it answers A questions for the names it is told to list
(a blocklist zone as a test needs it, built on dnspython's message code) and NXDOMAIN for
every other name, or, made silent, never answers at all (a resolver that is down)."""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class DnsServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.host, self.port = self.sock.getsockname()[:2]
        self.records: dict[str, list[str]] = {}  # a name (no trailing dot, lower case) -> its A answers
        self.silent = False
        self.asked: list[str] = []  # every name asked, in order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    @property
    def address(self) -> str:
        """As [deliverability] resolver takes it."""
        return f"{self.host}:{self.port}"

    def start(self) -> DnsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            question = query.question[0] if query.question else None
            name = question.name.to_text().rstrip(".").lower() if question is not None else ""
            self.asked.append(name)
            if self.silent:
                continue
            answer = dns.message.make_response(query)
            answer.flags |= dns.flags.RA
            found = self.records.get(name)
            if found is None:
                answer.set_rcode(dns.rcode.NXDOMAIN)
            elif question is not None and question.rdtype == dns.rdatatype.A:
                answer.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", *found))
            self.sock.sendto(answer.to_wire(), peer)
