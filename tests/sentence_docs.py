"""A small eval set for the extractive answerer's choice of sentence: documents a test builds.

Written for these tests (no outside source, no licence to note).  Each document is a page or
more of realistic text in which the answering sentence shares the question's specific terms
("wing-type", "made of", "signed") and distractor sentences share only its topic (issue 28,
part 1).  ``QUESTIONS`` are asked of the whole folder; ``NEAR_MISSES`` must be declined.
"""

from __future__ import annotations

import zlib
from email.message import EmailMessage
from pathlib import Path

NUTS = """Boots Self-Locking Nuts

Maintenance Manual, Chapter 5: Hardware

Self-locking nuts are used on aircraft to provide tight connections which will not shake loose under \
severe vibration. Boots self-locking nuts are of one-piece, all-metal construction, designed to hold \
tight despite severe vibration. Boots self-locking nuts are made with three different spring styles and \
in various shapes and sizes. Boots self-locking nuts may be used on any fitting where the temperature \
does not exceed 250 degrees Fahrenheit.

The Boots self-locking nut is used where there is no room for a castellated nut and cotter pin. It \
should not be used in connections subject to rotation, such as pulleys and bell cranks. A Boots nut \
with a damaged locking element must be discarded and replaced with a new one.

Wing-type nuts are made of anodized aluminum alloy and are used where weight must be kept low. The \
anchor-type nut is used where a nut must remain in place when the bolt is removed. Channel-type nuts \
are installed in rows along the edges of inspection panels.

Boots self-locking nuts are identified by a colour mark on the body of the nut. Mechanics should \
inspect each nut for cracks and worn threads before reusing it. A self-locking nut that can be \
turned by hand past its locking element has lost its grip and must not be reused. Always tighten \
Boots nuts to the torque given in the table for their size.
"""

LETTER = [
    "Harbourside Community Trust",
    "14 Quay Street, Dunmore, DN4 7QA  |  Telephone 01632 960 142",
    "12 March 2024",
    "Mr Daniel Okafor, 22 Mill Lane, Dunmore, DN4 2BX",
    "Dear Mr Okafor,",
    "Thank you for your letter of 28 February about the footpath beside the old boatyard. The Trust "
    "shares your concern about the condition of the path and the lighting near the slipway.",
    "We have asked the council to repair the handrail and to replace the two broken lamps before the "
    "end of April. In the meantime the path will stay open, and a temporary barrier has been placed at "
    "the top of the steps. The boatyard itself remains closed to the public while the survey continues.",
    "Our volunteers will walk the path every Saturday morning and report any new damage. If you notice "
    "anything that needs attention, please call the office or write to us at the address above. The "
    "Trust's annual report, which describes all of this year's works, is enclosed with this letter.",
    "We are grateful to residents like you who take the time to let us know.",
    "Yours sincerely,",
    "Margaret Holloway",
    "Chair of the Board of Trustees",
]

FAMILY_DAY = """Subject: You're invited: Riverside Family Day on Saturday 8 June

Dear colleagues,

You and your families are warmly invited to the Riverside Family Day, our summer celebration for \
everyone who works at the Riverside campus.

The family day takes place on Saturday 8 June from 11:00 to 16:00 in the meadow behind Building C. \
Parking is free in the north car park, and a shuttle bus runs from the station every twenty minutes.

There will be a bouncy castle, face painting, a treasure hunt, pony rides and a barbecue lunch. \
Children under twelve can enter the sandcastle competition, and prizes will be given at 15:00.

Please register by 24 May so that we can plan the catering, and tell us about any dietary needs. \
Guests are welcome, but please register them too. If it rains, the family day moves into the \
sports hall.

We look forward to seeing you there.

The Social Committee
"""

# The same question over other shapes of invitation: a slide's bullet list, a Word table, a
# PDF's one listing sentence (issue 28: each was answered with the title or the date line).
OPEN_DAY = [
    ("Hillside School Open Day", ["Saturday 14 September", "All families welcome"]),
    ("When and where", ["10:00 to 15:00 at the main building", "Parking on the sports field"]),
    ("What's on at the open day", ["Science experiments", "A school choir concert", "Guided tours", "A cake sale"]),
]
SUMMER_FAIR = [
    "Westbrook Summer Fair",
    "The Westbrook Summer Fair returns to the village green on Sunday 21 July.",
    "The summer fair opens at noon and closes at six, and entry is free for everyone.",
]
SUMMER_FAIR_TABLE = [
    ("Time", "Activity", "Place"),
    ("12:00", "Tug of war", "Village green"),
    ("13:00", "Dog show", "Paddock"),
    ("14:30", "Morris dancing", "Bandstand"),
    ("16:00", "Raffle draw", "Tea tent"),
]
HARVEST = [
    "Harvest Festival at St Mary's Farm",
    "The harvest festival will be held at St Mary's Farm on Saturday 28 September.",
    "The harvest festival starts at ten in the morning and ends at four in the afternoon.",
    "There will be apple pressing, hay rides and a tractor parade.",
    "Tickets for the harvest festival cost five pounds for adults; children go free.",
]

SLIDES = [
    ("Harbour Bridge Renovation", ["Project update for the steering group", "April 2024"]),
    (
        "Where we are",
        [
            "Phase one, the survey of the deck and cables, finished in March.",
            "The renovation is on schedule and within the approved budget.",
        ],
    ),
    (
        "Phase two",
        [
            "Phase two replaces the expansion joints and resurfaces the deck.",
            "Phase two has a budget of 2.4 million euros and starts in September.",
            "The bridge will stay open with one lane in each direction.",
        ],
    ),
    (
        "Risks",
        [
            "Steel prices may rise before the contracts are signed.",
            "Night work needs a permit from the harbour authority.",
        ],
    ),
]

MANUAL = [
    "Fire Safety Procedures - Northgate Library",
    "All staff must know the location of the fire exits, alarm points and extinguishers on their floor.",
    "The fire alarm is tested every Monday at 09:30; no evacuation is needed during the test.",
    "Fire extinguishers must be inspected by a certified technician every twelve months.",
    "Staff should check monthly that each extinguisher is in place and its seal is unbroken.",
    "In a fire, close doors behind you and leave by the nearest safe exit.",
    "The assembly point is the car park opposite the main entrance.",
    "Fire wardens sweep their floor and report to the chief warden at the assembly point.",
    "Nobody may re-enter the building until the fire service says it is safe.",
]

NOTES_MD = """# Release checklist

The release manager owns the checklist below and signs off each release.

## Before the release

- Merge the release branch only after **all tests pass** on the main pipeline.
- The changelog is written by the *developer who merged the last feature*.
- Tag the release with the version number, for example `v2.3.0`.

## After the release

Announce the release on the mailing list. The **documentation site is rebuilt automatically** \
within ten minutes of the tag. Old releases are kept for two years.
"""

#: (question, phrase the answer must contain, file it must cite).
QUESTIONS = [
    ("What are wing-type Boots self-locking nuts made of?", "anodized aluminum alloy", "nuts.txt"),
    ("Who signed the letter?", "Margaret Holloway", "letter.docx"),
    ("What activities will there be at the family day?", "face painting", "family-day.eml"),
    ("What is the budget of phase two?", "2.4 million euros", "bridge.pptx"),
    ("How often must the fire extinguishers be inspected?", "every twelve months", "fire-safety.pdf"),
    ("Who writes the changelog?", "developer who merged the last feature", "release.md"),
    ("What activities will there be at the open day?", "Science experiments", "open-day.pptx"),
    ("What activities will there be at the summer fair?", "Activity: ", "summer-fair.docx"),
    ("What activities will there be at the harvest festival?", "apple pressing", "harvest-festival.pdf"),
]

#: Questions the documents come near but do not answer.
NEAR_MISSES = [
    "What are hex-type Boots self-locking nuts made of?",  # the manual has wing-, anchor- and channel-type nuts
    "What is the budget of phase three?",
]


def write_pdf(path: Path, lines: list[str]) -> Path:
    """A one-page PDF of ``lines`` in Helvetica: a text layer as a word processor writes one."""
    escaped = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in lines]
    content = "BT /F1 10 Tf 14 TL 50 780 Td " + " ".join(f"({line}) '" for line in escaped) + " ET"
    stream = zlib.compress(content.encode("latin-1"))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def write_documents(folder: Path) -> Path:
    """Every document of the eval set, written into ``folder``."""
    import docx
    from pptx import Presentation

    (folder / "nuts.txt").write_text(NUTS, encoding="utf-8")
    (folder / "release.md").write_text(NOTES_MD, encoding="utf-8")

    letter = docx.Document()
    for paragraph in LETTER:
        letter.add_paragraph(paragraph)
    letter.save(str(folder / "letter.docx"))

    message = EmailMessage()
    header, _, body = FAMILY_DAY.partition("\n\n")
    message["Subject"] = header.removeprefix("Subject: ")
    message["From"] = "Social Committee <social@riverside.example>"
    message["To"] = "all-staff@riverside.example"
    message["Date"] = "Mon, 13 May 2024 09:00:00 +0000"
    message.set_content(body)
    (folder / "family-day.eml").write_bytes(bytes(message))

    deck = Presentation()
    for title, points in SLIDES:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = "\n".join(points)
    deck.save(str(folder / "bridge.pptx"))

    write_pdf(folder / "fire-safety.pdf", MANUAL)
    write_pdf(folder / "harvest-festival.pdf", HARVEST)

    deck = Presentation()
    for title, points in OPEN_DAY:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = "\n".join(points)
    deck.save(str(folder / "open-day.pptx"))

    fair = docx.Document()
    fair.add_heading(SUMMER_FAIR[0], 1)
    for paragraph in SUMMER_FAIR[1:]:
        fair.add_paragraph(paragraph)
    table = fair.add_table(rows=len(SUMMER_FAIR_TABLE), cols=3)
    for r, row in enumerate(SUMMER_FAIR_TABLE):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    fair.add_paragraph("Bring a picnic blanket; food stalls sell drinks and sandwiches all afternoon.")
    fair.save(str(folder / "summer-fair.docx"))
    return folder
