"""Who a reply goes to and what its subject is: the rule of docs/pen-api.md, "Replying and
forwarding", in one place for the terminal client and the web pages.

It works on any kind of address (the client's ``Address``, the server's ``{"email"}`` dicts,
plain strings) through an ``email_of`` function, and keeps each address as it was given (its
name, its spelling of the address). It does not clean text for a screen: the client passes
subjects through its safe-text function first; the PEN's subjects have no control characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

__all__ = ["FORWARD_PREFIXES", "MAX_SUBJECT", "REPLY_PREFIXES", "forward_subject", "reply_recipients",
           "reply_subject"]

A = TypeVar("A")

MAX_SUBJECT = 998  # RFC 5322's line limit, and the contract's

# The prefixes mail programs put before a subject, by language (matched without regard to case).
# "VS" is a forward in Danish and Norwegian ("videresendt") but a reply in Finnish ("vastaus");
# it is taken as a forward here, so a reply to "VS: x" is "Re: VS: x" and nothing is lost.
REPLY_PREFIXES = (
    "Re",  # English, Latin, and most programs in any language
    "Aw",  # German: Antwort
    "Sv",  # Swedish, Danish, Norwegian, Icelandic: svar
    "Antw",  # Dutch: antwoord
    "Odp",  # Polish: odpowiedź
    "Odg",  # Croatian, Serbian, Slovenian: odgovor
    "R", "RIF",  # Italian: risposta, riferimento
    "Ref", "Réf", "Rép",  # French: référence, réponse
    "Res",  # Portuguese: resposta
    "Vá",  # Hungarian: válasz
    "Ynt",  # Turkish: yanıt
    "Atb",  # Latvian: atbilde
    "Ats",  # Lithuanian: atsakymas
    "ΑΠ", "ΣΧΕΤ",  # Greek
    "回复", "回覆", "答复",  # Chinese
)
FORWARD_PREFIXES = (
    "Fwd", "Fw",  # English
    "WG",  # German: weitergeleitet
    "TR",  # French: transféré
    "VS",  # Danish, Norwegian: videresendt
    "VB",  # Swedish: vidarebefordrat
    "VL",  # Finnish: välitetty
    "RV",  # Spanish: reenviado
    "Enc",  # Portuguese: encaminhado
    "Doorst",  # Dutch: doorsturen
    "PD",  # Polish: przekaż dalej
    "转发", "轉寄",  # Chinese
)
_SPACE = re.compile(r"[ \t\r\n]+")


def _prefix_run(words: Sequence[str]) -> re.Pattern[str]:
    """One prefix: a word, maybe a counter ("[2]", "(3)"), and a colon (":" or the wide "："),
    with any spaces between; the longest word first, so "RIF" is not read as "R"."""
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?:(?:{alternatives})\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+", re.IGNORECASE)


_REPLY_RUN = _prefix_run(REPLY_PREFIXES)
_FORWARD_RUN = _prefix_run(FORWARD_PREFIXES)


def _fold(subject: str | None, run: re.Pattern[str], prefix: str) -> str:
    text = _SPACE.sub(" ", subject or "").strip()
    match = run.match(text)
    if match:
        text = text[match.end():]
    return (prefix + text)[:MAX_SUBJECT]


def reply_subject(subject: str | None) -> str:
    """ "Re: <subject>": any run of leading reply prefixes ("Re:", "AW:", "Re[2]:", "SV: RE:")
    becomes one "Re: "; white space runs become one space; at most 998 characters."""
    return _fold(subject, _REPLY_RUN, "Re: ")


def forward_subject(subject: str | None) -> str:
    """ "Fwd: <subject>": any run of leading forward prefixes ("Fwd:", "FW:", "WG:", "TR:")
    becomes one "Fwd: "; otherwise as reply_subject."""
    return _fold(subject, _FORWARD_RUN, "Fwd: ")


def reply_recipients(sender: A | None, to: Iterable[A], cc: Iterable[A], me: Iterable[str], *, reply_all: bool,
                     email_of: Callable[[A], str]) -> tuple[list[A], list[A]]:
    """(to, cc) of a reply to a message from `sender` to `to`, copied to `cc`.

    Reply: to the sender. Reply to all: to the sender and the original To, copied to the
    original Cc. One's own message (the sender is one of `me`) is answered to its original To
    (and, to all, copied to its Cc). Every address of `me` is left out, without regard to
    case; an address named twice keeps its first place (To before Cc); an empty one is left
    out. If no one is left in To, the reply goes to the sender (one's own message sent only
    to oneself is answered to oneself).
    """
    mine = {m.strip().lower() for m in me if m and m.strip()}

    def key(a: A) -> str:
        return (email_of(a) or "").strip().lower()

    seen = set(mine)

    def new(people: Iterable[A]) -> list[A]:
        """Those not yet seen (nor empty), in order; they are seen from now on."""
        kept = []
        for a in people:
            k = key(a)
            if k and k not in seen:
                seen.add(k)
                kept.append(a)
        return kept

    has_sender = sender is not None and bool(key(sender))
    own = has_sender and key(sender) in mine
    new_to = new(([] if own or not has_sender else [sender]) + (list(to) if own or reply_all else []))
    new_cc = new(cc) if reply_all else []
    if not new_to and has_sender:  # only one's own message can leave To empty, and `me` is in no Cc
        new_to = [sender]
    return new_to, new_cc
