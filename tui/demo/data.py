"""The demo clinic's people, files and messages: what `tui.demo` seeds a PEN with, and
the planner that turns them into threads. No network here and no Textual."""

from __future__ import annotations

import random
import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

PEN_NAME = "Riverside Clinic"
FOOTER = "Sent by Riverside Clinic of 12 River Road, Springfield, IL 62701, Call: (555) 010-4477"
DOMAIN = "riverside.example"
DEMO_EMAIL = f"dr.ruiz@{DOMAIN}"
DEMO_PASSWORD = "riverside-demo"
GUEST_PASSWORD = "guest-demo-pass"
DISCLAIMERS = {
    "staff": ("CONFIDENTIALITY NOTICE: This notice and the secure message it links to are meant only for "
              "the named recipient and may contain protected health information. If it reached you by "
              "mistake, please delete it and call Riverside Clinic at (555) 010-4477."),
    "physicians": ("PHYSICIAN COMMUNICATION: The linked message contains clinical information protected "
                   "under HIPAA. It is not a substitute for an appointment; in an emergency call 911."),
}
DEFAULT_MESSAGES = 300
DEFAULT_BIG_MB = 50
CONCURRENCY = 4
HISTORY_DAYS = 42
STOP_SECONDS = 5.0


class DemoError(Exception):
    """The demo could not start; the message is one sentence for a person."""


# ---------------------------------------------------------------- people


@dataclass(frozen=True)
class Person:
    key: str
    email: str
    name: str
    kind: str  # physician | nurse | reception | billing | admin | patient | partner
    package: str | None = None
    signature: str = ""

    @property
    def member(self) -> bool:
        return self.kind not in ("patient", "partner")

    @property
    def first(self) -> str:
        parts = self.name.replace("Dr. ", "").split()
        return parts[0] if parts else self.name


def _m(key, local, name, kind, package, signature) -> Person:
    return Person(key, f"{local}@{DOMAIN}", name, kind, package, signature)


MEMBERS = [
    _m("ruiz", "dr.ruiz", "Dr. Elena Ruiz", "physician", "physicians",
       "Elena Ruiz, MD\nInternal Medicine, Riverside Clinic\n(555) 010-4477 ext. 212"),
    _m("okafor", "dr.okafor", "Dr. Samuel Okafor", "physician", "physicians",
       "Samuel Okafor, MD, FACC\nCardiology, Riverside Clinic\n(555) 010-4477 ext. 230"),
    _m("natarajan", "dr.natarajan", "Dr. Priya Natarajan", "physician", "physicians",
       "Priya Natarajan, MD\nPediatrics, Riverside Clinic\n(555) 010-4477 ext. 241"),
    _m("lindqvist", "dr.lindqvist", "Dr. Erik Lindqvist", "physician", "physicians",
       "Erik Lindqvist, DO\nFamily Medicine, Riverside Clinic\n(555) 010-4477 ext. 225"),
    _m("chen", "j.chen", "Jamie Chen, RN", "nurse", "staff",
       "Jamie Chen, RN\nNursing, Riverside Clinic\n(555) 010-4477 ext. 118"),
    _m("bell", "m.bell", "Marcus Bell, RN", "nurse", "staff",
       "Marcus Bell, RN\nNursing, Riverside Clinic\n(555) 010-4477 ext. 119"),
    _m("park", "l.park", "Linda Park", "reception", "staff",
       "Linda Park\nFront Desk, Riverside Clinic\n(555) 010-4477"),
    _m("haddad", "o.haddad", "Omar Haddad", "billing", "staff",
       "Omar Haddad\nBilling & Insurance, Riverside Clinic\n(555) 010-4477 ext. 150"),
    _m("whitfield", "g.whitfield", "Grace Whitfield", "admin", "staff",
       "Grace Whitfield\nPractice Manager, Riverside Clinic\n(555) 010-4477 ext. 101"),
]
ADMIN_KEY = "whitfield"

PARTNERS = [
    Person("whitaker", "a.whitaker@springfield-imaging.example", "Dr. Alan Whitaker", "partner",
           signature="Alan Whitaker, MD\nRadiology, Springfield Imaging Center\n(555) 014-2200"),
    Person("lab", "results@lakeside-lab.example", "Lakeside Laboratory", "partner"),
    Person("plan", "priorauth@prairiehealth.example", "Prairie State Health Plan", "partner"),
    Person("pharmacy", "rx@mainstreet-pharmacy.example", "Main Street Pharmacy", "partner"),
    Person("hospital", "referrals@springfield-general.example", "Springfield General Referrals", "partner"),
]

_PATIENTS = [
    ("gonzalez", "maria.gonzalez@mailbox.example", "Maria Gonzalez"),
    ("kim", "r.kim@mailbox.example", "Robert Kim"),
    ("thompson", "aisha.thompson@mailbox.example", "Aisha Thompson"),
    ("novak", "gnovak@mailbox.example", "George Novak"),
    ("weiss", "hannah.weiss@mailbox.example", "Hannah Weiss"),
    ("obrien", "dan.obrien@mailbox.example", "Daniel O'Brien"),
    ("rahman", "f.rahman@mailbox.example", "Fatima Rahman"),
    ("sandoval", "psandoval@mailbox.example", "Peter Sandoval"),
    ("martinez", "lucy.martinez@mailbox.example", "Lucy Martinez"),
    ("brooks", "walter.brooks@mailbox.example", "Walter Brooks"),
    ("tanaka", "mei.tanaka@mailbox.example", "Mei Tanaka"),
    ("ortiz", "sam.ortiz@mailbox.example", "Samuel Ortiz"),
]
PATIENTS = [Person(k, e, n, "patient") for k, e, n in _PATIENTS]
PEOPLE: dict[str, Person] = {p.key: p for p in MEMBERS + PARTNERS + PATIENTS}
# Outsiders that register through their invitation link and answer.
REGISTERING_GUESTS = ("gonzalez", "whitaker")


# ---------------------------------------------------------------- files


@dataclass
class FileSpec:
    filename: str
    content_type: str
    make: Callable[[Path], object]  # writes the file at the given path
    size_hint: int = 0


def _pdf(title: str, lines: list[str], scan: tuple[int, int, bytes] | None = None) -> bytes:
    """A small valid PDF: one page of text, and optionally a grey 'scanned' image."""

    def esc(s: str) -> str:
        s = s.encode("latin-1", "replace").decode("latin-1")
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 16 Tf", "72 740 Td", f"({esc(title)}) Tj", "/F1 10 Tf", "0 -24 Td"]
    for line in lines:
        ops += [f"({esc(line)}) Tj", "0 -14 Td"]
    ops.append("ET")
    if scan:
        ops += ["q", "468 0 0 420 72 90 cm", "/Im1 Do", "Q"]
    content = "\n".join(ops).encode("latin-1")
    resources = b"<< /Font << /F1 4 0 R >>" + (b" /XObject << /Im1 6 0 R >>" if scan else b"") + b" >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources " + resources
        + b" /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    if scan:
        w, h, pixels = scan
        objects.append(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                       b"/BitsPerComponent 8 /Length %d >>\nstream\n" % (w, h, len(pixels)) + pixels
                       + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _png(width: int, height: int, seed: int) -> bytes:
    """A small real PNG: a skin-toned gradient with some texture, like a clinical photo."""
    rng = random.Random(seed)
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")
        for x in range(width):
            d = ((x - width / 2) ** 2 + (y - height / 2) ** 2) ** 0.5 / (width / 2)
            n = rng.randint(-12, 12)
            red = max(0, min(255, int(222 - 40 * d + n + (30 if d < 0.25 else 0))))
            row += bytes((red, max(0, min(255, int(170 - 50 * d + n))), max(0, min(255, int(140 - 50 * d + n)))))
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows), 6)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def _write(data: bytes) -> Callable[[Path], object]:
    return lambda path: path.write_bytes(data)


def _write_random(size: int, header: bytes = b"", seed: int = 0) -> Callable[[Path], None]:
    """`size` bytes of noise after `header`, the same for the same seed: a 4 MiB seeded
    block written over and over, so that a demo made from the shipped data set can write the
    very file (the sha256 its database names) in a few tens of milliseconds."""
    def make(path: Path) -> None:
        block = random.Random(seed).randbytes(min(max(size - len(header), 0), 4 << 20))
        with path.open("wb") as f:
            f.write(header)
            left = size - len(header)
            while left > 0:
                chunk = block[:left]
                f.write(chunk)
                left -= len(chunk)
    return make


PANELS: dict[str, list[tuple[str, float, float, str, int]]] = {
    "CBC": [("WBC", 4.5, 11.0, "10^3/uL", 1), ("RBC", 4.2, 5.9, "10^6/uL", 2), ("Hemoglobin", 12.0, 17.5, "g/dL", 1),
            ("Hematocrit", 36, 50, "%", 1), ("MCV", 80, 100, "fL", 0), ("Platelets", 150, 400, "10^3/uL", 0),
            ("Neutrophils", 40, 70, "%", 0), ("Lymphocytes", 20, 40, "%", 0)],
    "Comprehensive metabolic panel": [
        ("Glucose", 70, 99, "mg/dL", 0), ("BUN", 7, 20, "mg/dL", 0), ("Creatinine", 0.6, 1.2, "mg/dL", 2),
        ("eGFR", 60, 120, "mL/min/1.73m2", 0), ("Sodium", 135, 145, "mmol/L", 0), ("Potassium", 3.5, 5.1, "mmol/L", 1),
        ("Chloride", 98, 107, "mmol/L", 0), ("CO2", 22, 29, "mmol/L", 0), ("Calcium", 8.6, 10.3, "mg/dL", 1),
        ("Total protein", 6.0, 8.3, "g/dL", 1), ("Albumin", 3.5, 5.0, "g/dL", 1), ("ALT", 7, 56, "U/L", 0),
        ("AST", 10, 40, "U/L", 0), ("Alkaline phosphatase", 44, 147, "U/L", 0),
        ("Bilirubin, total", 0.1, 1.2, "mg/dL", 1)],
    "Lipid panel": [("Total cholesterol", 125, 200, "mg/dL", 0), ("LDL", 50, 100, "mg/dL", 0),
                    ("HDL", 40, 80, "mg/dL", 0), ("Triglycerides", 50, 150, "mg/dL", 0)],
    "Thyroid panel": [("TSH", 0.4, 4.0, "mIU/L", 2), ("Free T4", 0.8, 1.8, "ng/dL", 2)],
    "Hemoglobin A1c": [("Hemoglobin A1c", 4.0, 5.6, "%", 1), ("Estimated average glucose", 68, 114, "mg/dL", 0)],
    "Iron studies": [("Ferritin", 20, 250, "ng/mL", 0), ("Iron", 60, 170, "ug/dL", 0), ("TIBC", 240, 450, "ug/dL", 0),
                     ("Transferrin saturation", 20, 50, "%", 0)],
}


def lab_csv(rng: random.Random, patient: Person, mrn: str, panel: str, when: datetime) -> tuple[bytes, int]:
    """A lab report as CSV; returns the bytes and how many results are out of range."""
    lines = [f"# Lakeside Laboratory - {panel}", f"# Patient: {patient.name}, MRN {mrn}",
             f"# Collected: {when:%Y-%m-%d %H:%M}, Reported: {(when + timedelta(hours=20)):%Y-%m-%d %H:%M}",
             "# Ordering physician: Riverside Clinic", "Test,Result,Units,Reference range,Flag"]
    flagged = 0
    for name, low, high, units, digits in PANELS[panel]:
        span = high - low
        value = rng.uniform(low - 0.25 * span, high + 0.25 * span) if rng.random() < 0.25 else rng.uniform(low, high)
        value = round(value, digits) if digits else int(round(value))
        flag = "H" if value > high else "L" if value < low else ""
        flagged += bool(flag)
        lines.append(f"{name},{value},{units},{low}-{high},{flag}")
    lines.append("# Results verified by Lakeside Laboratory, CLIA 14D0000000. Values outside the reference "
                 "range are flagged H (high) or L (low).")
    return ("\n".join(lines) + "\n").encode(), flagged


# ---------------------------------------------------------------- bodies


@dataclass
class Body:
    text: str
    html: str | None = None


Block = Any  # str (a paragraph) | ("ul" | "ol", [items]) | ("link", label, url) | ("h", text)


def render(blocks: list[Block], sender: Person, as_html: bool, quote: tuple[datetime, Person, Body] | None = None,
           greeting: str | None = None) -> Body:
    text_parts, html_parts = [], []
    if greeting:
        text_parts.append(greeting)
        html_parts.append(f"<p>{escape(greeting)}</p>")
    for block in blocks:
        if isinstance(block, str):
            text_parts.append(block)
            html_parts.append(f"<p>{escape(block)}</p>")
        elif block[0] in ("ul", "ol"):
            items = block[1]
            marks = [f"{i}. " for i in range(1, len(items) + 1)] if block[0] == "ol" else ["- "] * len(items)
            text_parts.append("\n".join(m + item for m, item in zip(marks, items)))
            html_parts.append(f"<{block[0]}>" + "".join(f"<li>{escape(i)}</li>" for i in items) + f"</{block[0]}>")
        elif block[0] == "link":
            text_parts.append(f"{block[1]}: {block[2]}")
            html_parts.append(f'<p><a href="{escape(block[2])}">{escape(block[1])}</a></p>')
        elif block[0] == "h":
            text_parts.append(block[1].upper())
            html_parts.append(f"<p><strong>{escape(block[1])}</strong></p>")
    signature = sender.signature or (sender.name if sender.member else "")
    if signature:
        text_parts.append("-- \n" + signature)
        html_parts.append('<p style="color:#666">' + "<br>".join(escape(s) for s in signature.splitlines())
                          + "</p>")
    if quote:
        when, who, parent = quote
        head = f"On {when:%a %d %b %Y at %H:%M}, {who.name} wrote:"
        quoted = [line for line in parent.text.split("\n-- \n")[0].splitlines()][:8]
        text_parts.append(head + "\n" + "\n".join("> " + q if q else ">" for q in quoted))
        html_parts.append(f"<p>{escape(head)}</p><blockquote>"
                          + "<br>".join(escape(q) for q in quoted) + "</blockquote>")
    text = "\n\n".join(text_parts) + "\n"
    return Body(text, "\n".join(html_parts) if as_html else None)


# ---------------------------------------------------------------- the plan


@dataclass
class Step:
    sender: str
    to: list[str]
    blocks: list[Block]
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    html: bool = False
    files: list[FileSpec] = field(default_factory=list)
    delay_minutes: tuple[float, float] = (20, 600)  # after the previous step
    greeting: str | None = None
    when: datetime | None = None
    body: Body | None = None
    subject: str = ""
    featured: bool = False  # one of the threads every demo has

    @property
    def recipients(self) -> list[str]:
        return list(dict.fromkeys(self.to + self.cc + self.bcc))


@dataclass
class Thread:
    subject: str
    steps: list[Step]
    start: datetime | None = None
    kind: str = ""


class Planner:
    """Builds believable threads, with times over the last weeks, from a seeded RNG."""

    def __init__(self, rng: random.Random, now: datetime, big_attachment_bytes: int):
        self.rng = rng
        self.now = now
        self.big = big_attachment_bytes
        self.mrn = {p.key: f"{rng.randint(100000, 999999)}" for p in PATIENTS}
        self.files_made = 0
        self.t0 = now  # when the thread being planned starts

    def pick_start(self, age_days: float | None = None) -> datetime:
        """A thread's first message: more of them recent, all in office hours."""
        if age_days is None:
            age_days = HISTORY_DAYS * (self.rng.random() ** 1.7)
        start = (self.now - timedelta(days=age_days)).replace(hour=self.rng.randint(7, 17),
                                                               minute=self.rng.randint(0, 59))
        while start > self.now - timedelta(minutes=5):
            start -= timedelta(days=1)
        return start

    # -- helpers
    def pick(self, seq):
        return self.rng.choice(seq)

    def members(self, kind: str) -> list[str]:
        return [p.key for p in MEMBERS if p.kind == kind]

    def physician(self, demo_bias: float = 0.6, exclude: tuple = ()) -> str:
        if "ruiz" not in exclude and self.rng.random() < demo_bias:
            return "ruiz"
        return self.pick([k for k in self.members("physician") if k not in exclude and k != "ruiz"] or ["okafor"])

    def patient(self, exclude: tuple = ("gonzalez",)) -> Person:
        return self.pick([p for p in PATIENTS if p.key not in exclude])

    def pt(self, p: Person) -> str:
        return f"{p.name} (MRN {self.mrn[p.key]})"

    def day(self, offset_days: float = 0, base: datetime | None = None) -> str:
        return f"{(base or self.t0) + timedelta(days=offset_days):%A %B %-d}"

    def lab_file(self, patient: Person, panel: str, when: datetime) -> tuple[FileSpec, int]:
        data, flagged = lab_csv(self.rng, patient, self.mrn[patient.key], panel, when)
        slug = panel.split()[0].lower().replace(",", "")
        name = f"{slug}_{patient.name.split()[-1].lower().replace(chr(39), '')}_{when:%Y-%m-%d}.csv"
        return FileSpec(name, "text/csv", _write(data), len(data)), flagged

    def pdf_file(self, name: str, title: str, lines: list[str], scan_px: int = 0) -> FileSpec:
        scan = None
        if scan_px:
            seed = self.rng.randrange(1 << 30)
            pixels = random.Random(seed).randbytes(scan_px * scan_px)
            scan = (scan_px, scan_px, pixels)
        data = _pdf(title, lines, scan)
        return FileSpec(name, "application/pdf", _write(data), len(data))

    def png_file(self, name: str) -> FileSpec:
        seed = self.rng.randrange(1 << 30)  # drawn now, drawn at make time (pure Python, slow)
        return FileSpec(name, "image/png", lambda path: path.write_bytes(_png(160, 120, seed)), 160 * 120 * 3)

    def ics_file(self, when: datetime, who: Person, with_whom: Person) -> FileSpec:
        start = when.astimezone(UTC)
        text = "\r\n".join([
            "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Riverside Clinic//Appointments//EN", "BEGIN:VEVENT",
            f"UID:{uuid.UUID(int=self.rng.getrandbits(128))}@{DOMAIN}", f"DTSTAMP:{self.t0:%Y%m%dT%H%M%SZ}",
            f"DTSTART:{start:%Y%m%dT%H%M%SZ}", f"DTEND:{start + timedelta(minutes=30):%Y%m%dT%H%M%SZ}",
            f"SUMMARY:Appointment with {with_whom.name}", "LOCATION:Riverside Clinic\\, 12 River Road\\, Springfield",
            f"DESCRIPTION:Please arrive 15 minutes early\\, {who.first}.", "END:VEVENT", "END:VCALENDAR", ""])
        return FileSpec("appointment.ics", "text/calendar", _write(text.encode()), len(text))

    # -- the threads that are always there
    def featured(self) -> list[Thread]:
        maria, kim = PEOPLE["gonzalez"], PEOPLE["kim"]
        threads = []
        self.t0 = self.pick_start(self.rng.uniform(2, 4))
        lab, flagged = self.lab_file(maria, "Iron studies", self.t0 - timedelta(days=2))
        cbc, _ = self.lab_file(maria, "CBC", self.t0 - timedelta(days=2))
        threads.append(Thread("Your lab results from last week", [
            Step("ruiz", ["gonzalez"], [
                "Your blood tests from last Tuesday are back, and I have attached the full report.",
                ("ul", ["Your hemoglobin has improved since March.",
                        "Your ferritin (iron stores) is still on the low side.",
                        "Kidney and liver values are normal."]),
                "Please keep taking the iron supplement once a day with orange juice, and avoid taking it "
                "with coffee or tea. We will recheck in eight weeks.",
                ("link", "Book your follow-up online", "https://portal.riverside.example/appointments"),
            ], html=True, files=[lab, cbc], greeting="Dear Ms. Gonzalez,"),
            Step("gonzalez", ["ruiz"], [
                "Thank you for the quick results. The iron gives me stomach aches some days. Can I take it "
                "every other day instead, or switch to a different kind?",
                "Maria"], delay_minutes=(90, 300), greeting="Hello Dr. Ruiz,"),
            Step("ruiz", ["gonzalez"], [
                "Yes, every other day works well and is often easier on the stomach; your body absorbs it "
                "just as well. If the aches continue, we can try ferrous gluconate instead.",
                ("ol", ["Take it every other day, in the morning.", "Keep the orange juice, skip the coffee.",
                        "Write to me if the aches do not settle within two weeks."]),
            ], html=True, delay_minutes=(60, 240), greeting="Dear Ms. Gonzalez,"),
            Step("gonzalez", ["ruiz"], ["That helps a lot, thank you. I will book the follow-up.", "Maria"],
                 delay_minutes=(30, 120), greeting="Thank you Dr. Ruiz!"),
        ], start=self.t0, kind="guest"))
        self.t0 = self.pick_start(self.rng.uniform(2, 5))
        big = FileSpec(f"CT_chest_Kim_R_series3_{(self.t0 + timedelta(days=1)):%Y%m%d}.dcm", "application/dicom",
                       _write_random(self.big, b"\x00" * 128 + b"DICM", self.rng.randrange(1 << 30)), self.big)
        report = self.pdf_file("CT_chest_report_Kim_R.pdf", "Springfield Imaging Center - CT chest with contrast", [
            f"Patient: {kim.name}   MRN: {self.mrn['kim']}   Referring: Dr. Elena Ruiz",
            "Technique: helical CT of the chest after 80 mL IV contrast.",
            "Findings: 7 mm solid nodule, right lower lobe, unchanged from prior study.",
            "No lymphadenopathy. No pleural effusion. Heart size normal.",
            "Impression: stable pulmonary nodule; follow-up CT in 12 months per Fleischner criteria.",
            "Electronically signed: Alan Whitaker, MD"])
        req = self.pdf_file("imaging_requisition_Kim_R.pdf", "Riverside Clinic - Imaging requisition", [
            f"Patient: {kim.name}   MRN: {self.mrn['kim']}   DOB: 1961-04-17",
            "Study requested: CT chest with contrast", "Reason: follow-up of 7 mm RLL nodule (2025 study)",
            "Creatinine 0.9 mg/dL (eGFR > 90). No contrast allergy.", "Requested by: Elena Ruiz, MD"])
        threads.append(Thread(f"Imaging request: CT chest for {kim.name}", [
            Step("ruiz", ["whitaker"], [
                f"Could you schedule a CT chest with contrast for {self.pt(kim)}? He had a 7 mm right lower lobe "
                "nodule last year and is due for the follow-up study. The requisition is attached.",
                "Please send the images and report to me, with Dr. Okafor in copy."],
                cc=["okafor"], files=[req], greeting="Dear Dr. Whitaker,"),
            Step("whitaker", ["ruiz"], [
                f"{kim.name} was scanned this morning. The full series and my report are attached: the nodule is "
                "stable at 7 mm, nothing new. I would suggest another CT in twelve months.",
                "Alan"], cc=["okafor"], files=[big, report], delay_minutes=(1200, 2400), greeting="Dear Dr. Ruiz,"),
            Step("okafor", ["ruiz", "whitaker"], [
                "Thanks, Alan. Good news for him; his echo last month was also unremarkable, so no cardiac concern "
                "from my side.", "Sam"], delay_minutes=(60, 200), greeting="Hi both,"),
            Step("ruiz", ["whitaker"], [
                "Thank you for the fast turnaround. I will let him know and put the 12-month CT on his chart."],
                cc=["okafor"], delay_minutes=(30, 120), greeting="Alan,"),
        ], start=self.t0, kind="guest"))
        self.t0 = self.pick_start()
        everyone = [p.key for p in MEMBERS if p.key != ADMIN_KEY]
        threads.append(Thread("Staff meeting agenda", [
            Step(ADMIN_KEY, everyone, [
                ("h", "Staff meeting, Thursday at 12:30 in the conference room (lunch provided)"),
                ("ol", ["Welcome and announcements (5 min)", "Flu clinic schedule and volunteers (10 min)",
                        "New after-hours phone triage protocol (15 min)", "Patient portal sign-up numbers (5 min)",
                        "Open floor (10 min)"]),
                "If you cannot attend, please reply so I can share the notes with you.",
                ("link", "Triage protocol draft (intranet)", "https://intranet.riverside.example/policies/triage"),
            ], html=True, greeting="Hi everyone,"),
            Step("lindqvist", [ADMIN_KEY], ["I have clinic until 1 pm on Thursday; could you send me the notes?",
                                            "Thanks, Erik"], delay_minutes=(30, 180), greeting="Grace,"),
            Step("chen", [ADMIN_KEY], ["Could we add five minutes on the new vaccine fridge log? "
                                       "A few of us have questions.", "Jamie"],
                 delay_minutes=(30, 180), greeting="Hi Grace,"),
            Step(ADMIN_KEY, everyone, ["Updated agenda: five minutes on the vaccine fridge log added after the "
                                       "flu clinic item. Notes will go out to all of you on Friday."],
                 delay_minutes=(60, 300), greeting="Hi all,"),
        ], start=self.t0, kind="internal"))
        return threads

    # -- templates for the rest
    def t_lab_results(self) -> Thread:
        nurse, doc, p = self.pick(self.members("nurse")), self.physician(), self.patient()
        panel = self.pick(list(PANELS))
        base = self.t0 - timedelta(days=1)
        spec, flagged = self.lab_file(p, panel, base)
        finding = (f"{flagged} value{'s' if flagged != 1 else ''} flagged outside the reference range"
                   if flagged else "everything within the reference range")
        steps = [Step(nurse, [doc], [
            f"The {panel.lower()} for {self.pt(p)} came back from Lakeside this morning, {finding}. "
            "The report is attached.", "Do you want me to call the patient, or will you?"],
            files=[spec], greeting=f"Hi Dr. {PEOPLE[doc].name.split()[-1]},")]
        if self.rng.random() < 0.8:
            action = self.pick([
                "Please call her and book a follow-up in two weeks; no change to the medication for now.",
                "I will call him myself this afternoon. Please repeat the panel in six weeks.",
                "Nothing urgent. Please send the usual normal-results letter through the portal.",
                "Please ask the patient to come in for a repeat draw, fasting this time.",
            ])
            steps.append(Step(doc, [nurse], [f"Thanks, {PEOPLE[nurse].first}. {action}"], delay_minutes=(15, 240)))
            if self.rng.random() < 0.5:
                steps.append(Step(nurse, [doc], [self.pick([
                    "Done, the patient is booked for next Tuesday at 9:40.", "Called and left a voicemail; "
                    "I will try again tomorrow.", "Letter sent through the portal.",
                    "Repeat draw booked for Monday at 7:30, fasting."])], delay_minutes=(30, 400)))
        return Thread(f"Lab results ready: {p.name}", steps, kind="internal")

    def t_referral(self) -> Thread:
        doc = self.physician()
        specialist = self.pick([k for k in self.members("physician") if k != doc])
        p = self.patient()
        specialty = {"okafor": "cardiology", "natarajan": "pediatrics", "lindqvist": "sports medicine",
                     "ruiz": "internal medicine"}[specialist]
        reason = self.pick(["palpitations and an abnormal EKG", "exertional chest tightness",
                            "a new murmur heard at the annual exam", "poorly controlled hypertension",
                            "recurrent syncope", "persistent knee pain after a fall"])
        letter = self.pdf_file(f"referral_{p.name.split()[-1].lower().replace(chr(39), '')}.pdf",
                               f"Referral letter - {specialty.title()}", [
            f"Patient: {p.name}   MRN: {self.mrn[p.key]}", f"Reason for referral: {reason}",
            "History: see attached summary; medications reconciled at the last visit.",
            f"Referring physician: {PEOPLE[doc].name}", "Urgency: routine (within 4 weeks)"])
        steps = [Step(doc, [specialist], [
            f"I would like to refer {self.pt(p)} for a {specialty} consult because of {reason}. "
            "The referral letter is attached.",
            ("ul", ["Current medications: lisinopril 10 mg, atorvastatin 20 mg",
                    "Allergies: penicillin (rash)", "Last visit: two weeks ago"]),
            "Let me know if you need anything else before you see the patient."],
            html=self.rng.random() < 0.6, files=[letter], greeting=f"Hi {PEOPLE[specialist].first},")]
        steps.append(Step(specialist, [doc], [self.pick([
            f"Happy to see {p.first}. Linda will call to book; I have a slot next Wednesday.",
            f"Thanks for the referral. Could you order a Holter monitor before I see {p.first}? It will save a visit.",
            "Seen today. Plan is in the chart: echo ordered, continue current medications, review in a month.",
        ])], delay_minutes=(60, 1440), greeting=f"{PEOPLE[doc].first},"))
        if self.rng.random() < 0.4:
            steps.append(Step(doc, [specialist], ["Perfect, thank you."], delay_minutes=(10, 120)))
        return Thread(f"Referral: {p.name}, {specialty} consult", steps, kind="internal")

    def t_prior_auth(self) -> Thread:
        doc, p = self.physician(), self.patient()
        drug = self.pick(["Eliquis 5 mg", "Ozempic 0.5 mg", "Entresto 24/26 mg", "Jardiance 10 mg",
                          "MRI lumbar spine", "continuous glucose monitor"])
        steps = [Step("haddad", [doc], [
            f"Prairie State Health Plan needs a prior authorization for {drug} for {self.pt(p)}. "
            "I have filled in the form; I only need the clinical justification (diagnosis, what was tried "
            "before, and why this is needed).", "The plan's deadline is Friday."],
            greeting=f"Hi Dr. {PEOPLE[doc].name.split()[-1]},")]
        steps.append(Step(doc, ["haddad"], [self.pick([
            "Justification is in the chart note from yesterday: metformin and lifestyle changes for a year, "
            "A1c still above 8.", "Atrial fibrillation with CHA2DS2-VASc of 3; warfarin was stopped after a bleed.",
            "Three months of physical therapy without improvement, with radicular pain and numbness."])],
            delay_minutes=(60, 900), greeting="Omar,"))
        if self.rng.random() < 0.6:
            steps.append(Step("haddad", [doc], [self.pick([
                f"Submitted; reference PA-{self.rng.randint(100000, 999999)}. Usually five business days.",
                "Approved for twelve months. I have let the pharmacy know."])], delay_minutes=(120, 2880)))
        return Thread(f"Prior authorization needed: {p.name} - {drug}", steps, kind="internal")

    def t_callback(self) -> Thread:
        doc, p = self.physician(0.65), self.patient()
        ask = self.pick([
            "is asking whether she can take ibuprofen with her new blood pressure pill",
            "wants to know if his cough needs to be seen before the weekend",
            "would like her sick note extended until Friday",
            "is asking for a refill of his inhaler; the pharmacy says the prescription has expired",
            "has questions about the side effects of the new statin",
        ])
        steps = [Step("park", [doc], [
            f"{self.pt(p)} called at {self.rng.randint(8, 11)}:{self.rng.choice(['05', '20', '35', '50'])} and {ask}. "
            f"Best number: (555) 01{self.rng.randint(0, 9)}-{self.rng.randint(1000, 9999)}, "
            "any time before 5 pm."], greeting=f"Dr. {PEOPLE[doc].name.split()[-1]},")]
        if self.rng.random() < 0.7:
            steps.append(Step(doc, ["park"], [self.pick([
                "Called back and sorted it out, thanks Linda.",
                "Please book a 15-minute slot tomorrow morning; I want to listen to the chest.",
                "Refill sent to Main Street Pharmacy. Please let the patient know."])],
                delay_minutes=(20, 300), greeting="Thanks Linda,"))
        return Thread(f"Patient callback: {p.name}", steps, kind="internal")

    def t_med_rec(self) -> Thread:
        nurse, doc, p = self.pick(self.members("nurse")), self.physician(), self.patient()
        meds = self.rng.sample(["metformin 1000 mg twice daily", "lisinopril 20 mg daily",
                                "atorvastatin 40 mg at night",
                                "levothyroxine 75 mcg daily", "omeprazole 20 mg daily", "sertraline 50 mg daily",
                                "amlodipine 5 mg daily", "aspirin 81 mg daily", "vitamin D 2000 IU daily"], 5)
        steps = [Step(nurse, [doc], [
            f"I did the medication reconciliation for {self.pt(p)} at today's intake. The patient reports taking:",
            ("ul", meds),
            f"The chart still lists {self.pick(['hydrochlorothiazide', 'simvastatin', 'ranitidine'])}, which the "
            "patient says was stopped at the hospital in the spring. Can you confirm before I update the list?"],
            html=True, greeting="Hi,")]
        steps.append(Step(doc, [nurse], ["Confirmed, please remove it and add a note. Thank you for catching this."],
                          delay_minutes=(20, 400)))
        return Thread(f"Medication reconciliation: {p.name}", steps, kind="internal")

    def t_coverage(self) -> Thread:
        doc = self.physician(0.35)
        others = [k for k in self.members("physician") if k != doc]
        day = self.day(self.rng.randint(3, 20))
        steps = [Step(doc, others, [f"I have a family commitment on {day}. Could someone cover my afternoon "
                                    "clinic (eight patients, mostly follow-ups)? I can take a Saturday in return."],
                      greeting="Hi all,")]
        taker = self.pick(others)
        steps.append(Step(taker, [doc] + [o for o in others if o != taker],
                          [self.pick(["I can take it. Send me the list the day before.",
                                      "I can do 1 to 3 pm if someone else can do the last hour.",
                                      "Happy to help; I will swap with you on the 20th."])],
                          delay_minutes=(15, 300)))
        steps.append(Step(doc, others, ["Thank you! I will let Linda know so she can move the schedule."],
                          delay_minutes=(10, 90)))
        return Thread(f"Clinic coverage for {day}", steps, kind="internal")

    def t_supply(self) -> Thread:
        nurse = self.pick(self.members("nurse"))
        items = self.rng.sample(["nitrile gloves, size M (10 boxes)", "flu vaccine, 50 doses",
                                 "alcohol swabs (5 boxes)",
                                 "specimen cups (200)", "3 mL syringes (300)", "exam table paper (12 rolls)",
                                 "blood pressure cuffs, large adult (2)", "glucose test strips (10 boxes)"], 4)
        steps = [Step(nurse, [ADMIN_KEY], ["Here is this week's supply order for the nursing station:",
                                           ("ul", items),
                                           "The glove order is the urgent one; we are down to two boxes."],
                      html=True, greeting="Hi Grace,")]
        steps.append(Step(ADMIN_KEY, [nurse], ["Ordered, delivery expected Thursday. I added a spare box of gloves."],
                          delay_minutes=(30, 600)))
        return Thread(f"Supply order, week of {self.day(-self.rng.randint(0, 30))}", steps, kind="internal")

    def t_announcement(self) -> Thread:
        everyone = [p.key for p in MEMBERS if p.key != ADMIN_KEY]
        subject, blocks = self.pick([
            ("Flu clinic Saturdays: volunteers needed", [
                "We will run walk-in flu clinics on the next three Saturdays, 9 am to 1 pm.",
                ("ul", ["Two nurses and one physician per Saturday", "Reception from 8:30 for check-in",
                        "Overtime or time off in lieu, your choice"]),
                "Please reply with the Saturdays you can do."]),
            ("EHR maintenance this Sunday, 10 pm to 2 am", [
                "The records system will be read-only on Sunday night during the vendor's upgrade.",
                ("ul", ["Print the Monday 8 am schedule before you leave on Friday",
                        "Use the paper downtime forms in the front desk binder",
                        "Call the IT line if it is not back by 6 am"]),
                ("link", "Downtime procedure", "https://intranet.riverside.example/it/downtime")]),
            ("Holiday hours", ["The clinic closes at 2 pm on the day before the holiday and stays closed on "
                               "the holiday.",
                               "The on-call physician covers urgent calls as usual."]),
            ("New parking arrangement", ["From Monday, staff parking moves to the lot behind the pharmacy; "
                                         "the front lot is for patients only.",
                                         ("link", "Map of the new lot", "https://intranet.riverside.example/parking")]),
            ("Annual HIPAA training due", ["Everyone needs to finish the annual privacy training by the end of the "
                                           "month. It takes about 40 minutes.",
                                           ("link", "Training portal", "https://training.riverside.example/hipaa")]),
            ("Patient portal: 1,000 sign-ups", ["We passed 1,000 patients on the portal this week. Thank you for "
                                                "mentioning it at every visit!",
                                                ("ul", ["Secure messages answered within 2 business days",
                                                        "Lab results released after the physician reviews them"])]),
        ])
        steps = [Step(ADMIN_KEY, everyone, blocks, html=True, greeting="Hi everyone,")]
        if self.rng.random() < 0.5:
            who = self.pick(everyone)
            steps.append(Step(who, [ADMIN_KEY], [self.pick(["Count me in for the first one.",
                                                            "Thanks for the heads-up.", "Done already!",
                                                            "Will do, thanks Grace."])],
                              delay_minutes=(10, 600)))
        return Thread(subject, steps, kind="internal")

    def t_patient_results(self) -> Thread:
        doc, p = self.physician(0.7), self.patient()
        test = self.pick(["cholesterol", "thyroid", "blood sugar", "blood count"])
        panel = {"cholesterol": "Lipid panel", "thyroid": "Thyroid panel", "blood sugar": "Hemoglobin A1c",
                 "blood count": "CBC"}[test]
        files = []
        if self.rng.random() < 0.6:
            files.append(self.lab_file(p, panel, self.t0 - timedelta(days=2))[0])
        steps = [Step(doc, [p.key], [
            f"Your {test} results are back{' and attached' if files else ''}. " + self.pick([
                "They look good and no change is needed.", "They are a little higher than we would like; "
                "let us talk about it at your next visit.", "One value is slightly out of range, which is "
                "common and not a worry on its own; we will recheck it in three months."]),
            ("link", "See all your results on the patient portal", "https://portal.riverside.example/results")],
            html=self.rng.random() < 0.7, files=files, greeting=f"Dear {p.name},")]
        if self.rng.random() < 0.3:
            steps.append(Step(doc, [p.key], ["A quick reminder to book the follow-up visit we talked about."],
                              delay_minutes=(2880, 7200), greeting=f"Dear {p.name},"))
        return Thread(f"Your {test} results", steps, kind="external")

    def t_appointment(self) -> Thread:
        p, doc = self.patient(), self.physician(0.6)
        when = self.t0 + timedelta(days=self.rng.randint(2, 20))
        when = when.replace(hour=self.rng.randint(8, 16), minute=self.rng.choice([0, 20, 40]), second=0,
                            microsecond=0)
        steps = [Step("park", [p.key], [
            f"This confirms your appointment with {PEOPLE[doc].name} on {when:%A %B %-d} at {when:%-I:%M %p}.",
            ("ul", ["Please arrive 15 minutes early", "Bring your insurance card and a list of your medications",
                    "Call (555) 010-4477 if you need to reschedule"]),
            "The attached calendar file adds the visit to your calendar."],
            bcc=[doc] if self.rng.random() < 0.5 else [], html=True, files=[self.ics_file(when, p, PEOPLE[doc])],
            greeting=f"Dear {p.name},")]
        return Thread(f"Appointment confirmation: {when:%b %-d} at {when:%-I:%M %p}", steps, kind="external")

    def t_records(self) -> Thread:
        partner = self.pick(["hospital", "plan", "lab"])
        doc, p = self.physician(0.6), self.patient()
        scan = 1600 if (self.rng.random() < 0.15 and self.files_made < 3) else 0
        self.files_made += bool(scan)
        pdf = self.pdf_file(f"records_{p.name.split()[-1].lower().replace(chr(39), '')}.pdf",
                            "Riverside Clinic - Records release", [
                                f"Patient: {p.name}   MRN: {self.mrn[p.key]}",
                                "Enclosed: visit notes (last 12 months), problem list, medication list, immunizations.",
                                "Authorization to release signed by the patient and kept on file."], scan)
        steps = [Step("park", [partner], [
            f"As requested, the records of {self.pt(p)} are attached, with the patient's signed authorization.",
            f"Please direct clinical questions to {PEOPLE[doc].name}, in copy."], cc=[doc], files=[pdf],
            greeting="Hello,")]
        return Thread(f"Records request: {p.name}", steps, kind="external")

    def t_pharmacy(self) -> Thread:
        doc, p = self.physician(0.6), self.patient()
        steps = [Step(doc, ["pharmacy"], [
            f"Regarding the prescription for {p.name} (DOB on file) sent this morning: " + self.pick([
                "the dose should read 25 mg, not 250 mg. Corrected prescription sent electronically.",
                "please dispense the generic; the patient's plan does not cover the brand.",
                "the patient may pick it up at your Elm Street branch instead."])], greeting="Hello,")]
        return Thread(f"Prescription clarification: {p.name}", steps, kind="external")

    def t_photo(self) -> Thread:
        nurse, doc, p = self.pick(self.members("nurse")), self.physician(), self.patient()
        steps = [Step(nurse, [doc], [
            f"Wound check for {self.pt(p)}, day {self.rng.randint(5, 14)} after the excision. Photo attached. "
            "Edges look clean to me, mild redness around two of the sutures, no discharge, no fever.",
            "OK to remove the sutures today?"], files=[self.png_file(f"wound_{p.key}_{self.rng.randint(1, 9)}.png")],
            greeting="Hi,")]
        steps.append(Step(doc, [nurse], [self.pick(["Looks fine, go ahead and remove them.",
                                                    "Leave them three more days and recheck; the redness is "
                                                    "probably just irritation."])], delay_minutes=(10, 120)))
        return Thread(f"Wound check photo: {p.name}", steps, kind="internal")

    def t_ekg(self) -> Thread:
        doc, p = self.physician(0.8, exclude=("okafor",)), self.patient()
        ekg = self.pdf_file(f"ekg_{p.key}.pdf", "12-lead EKG", [
            f"Patient: {p.name}   MRN: {self.mrn[p.key]}",
            f"Rate {self.rng.randint(55, 110)} bpm, PR {self.rng.randint(140, 210)} ms, "
            f"QRS {self.rng.randint(80, 120)} ms, "
            f"QTc {self.rng.randint(400, 470)} ms", "Machine read: sinus rhythm, nonspecific ST-T changes",
            "Confirmed by: Samuel Okafor, MD"])
        steps = [Step("okafor", [doc], [
            f"I reviewed the EKG you sent for {self.pt(p)}. Nonspecific ST-T changes only, nothing acute. "
            "If the palpitations continue, a 48-hour Holter would be the next step."], files=[ekg],
            greeting=f"{PEOPLE[doc].first},")]
        if self.rng.random() < 0.6:
            steps.append(Step(doc, ["okafor"], ["Thank you, Sam. I will order the Holter."], delay_minutes=(20, 300)))
        return Thread(f"EKG review: {p.name}", steps, kind="internal")

    TEMPLATES = [("t_lab_results", 5), ("t_referral", 3), ("t_prior_auth", 2), ("t_callback", 4), ("t_med_rec", 2),
                 ("t_coverage", 1), ("t_supply", 1), ("t_announcement", 1), ("t_patient_results", 3),
                 ("t_appointment", 2), ("t_records", 1), ("t_pharmacy", 1), ("t_photo", 1), ("t_ekg", 2)]

    def plan(self, messages: int) -> list[Thread]:
        threads = self.featured()
        for thread in threads:
            for step in thread.steps:
                step.featured = True
        names, weights = zip(*self.TEMPLATES)
        while sum(len(t.steps) for t in threads) < messages:
            self.t0 = self.pick_start()
            thread = getattr(self, self.rng.choices(names, weights)[0])()
            thread.start = self.t0
            threads.append(thread)
        # Trim the last thread so the count is exact (a thread keeps at least its first message).
        extra = sum(len(t.steps) for t in threads) - messages
        while extra > 0 and len(threads) > 3:
            last = threads[-1]
            cut = min(extra, len(last.steps) - 1) if len(last.steps) > 1 else 0
            if cut:
                del last.steps[-cut:]
                extra -= cut
            else:
                threads.pop()
                extra -= 1
        self.schedule(threads)
        return threads

    def office_hours(self, when: datetime) -> datetime:
        """Mostly between 7 am and 7 pm: a late message moves to the next morning."""
        if when.hour >= 19:
            if self.rng.random() < 0.15:
                return when  # someone catching up in the evening
            when += timedelta(days=1)
        if when.hour >= 19 or when.hour < 7:
            when = when.replace(hour=self.rng.randint(7, 8), minute=self.rng.randint(0, 59))
        return when

    def schedule(self, threads: list[Thread]) -> None:
        """Times over the last weeks (more of them recent), each reply after the one before,
        and bodies (replies quote their parent)."""
        latest = self.now - timedelta(minutes=2)
        for thread in threads:
            times = [thread.start]
            for step in thread.steps[1:]:
                times.append(self.office_hours(times[-1] + timedelta(minutes=self.rng.uniform(*step.delay_minutes))))
            if times[-1] > latest:  # move the whole thread back by whole days, so its hours stay
                days = -(-(times[-1] - latest) // timedelta(days=1))
                times = [t - timedelta(days=days) for t in times]
            thread.start = times[0]
            parent: Step | None = None
            for step, when in zip(thread.steps, times):
                step.when = when
                step.subject = thread.subject if parent is None else "Re: " + thread.subject
                quote = (parent.when, PEOPLE[parent.sender], parent.body) if parent else None
                step.body = render(step.blocks, PEOPLE[step.sender], step.html, quote, step.greeting)
                parent = step


# ---------------------------------------------------------------- the stack
