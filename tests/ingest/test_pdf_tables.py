"""Tables on turned pages: a landscape table set sideways, a page shown turned by /Rotate."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.ingest.loaders import load
from tests.helpers import pdf_bytes

ROWS = [[(0, "Quarterly shipments by port")], [(0, "Port"), (120, "Crates"), (220, "Inspector"), (330, "Berth")]]
ROWS += [[(0, f"Quay {n}"), (120, str(n * 13)), (220, f"Agent {n}"), (330, f"B{n}")] for n in range(1, 9)]


def turned_pdf(matrix: tuple[int, int, int, int], origin: tuple[int, int], rotate: int) -> bytes:
    """A Letter page with ``ROWS`` drawn in 10 pt Helvetica through ``matrix`` (a quarter turn)
    from ``origin``, the page shown turned by ``rotate`` degrees."""
    a, b, c, d = matrix
    parts = []
    for n, cells in enumerate(ROWS):
        for x, text in cells:
            y = -14 * n  # in the text's own axes: a line is 14 pt below the one before
            ux, uy = origin[0] + a * x + c * y, origin[1] + b * x + d * y
            parts.append(b"BT /F1 10 Tf %d %d %d %d %d %d Tm (%s) Tj ET\n" % (a, b, c, d, ux, uy, text.encode()))
    stream = b"".join(parts)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Rotate %d /Contents 4 0 R "
        b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>" % rotate,
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    return pdf_bytes(objects)


@pytest.mark.parametrize(
    ("matrix", "origin", "rotate"),
    [
        ((1, 0, 0, 1), (72, 700), 0),  # upright, for comparison
        ((0, 1, -1, 0), (400, 72), 0),  # a portrait page, the table reading upwards
        ((0, -1, 1, 0), (200, 720), 0),  # ... reading downwards
        ((0, 1, -1, 0), (400, 72), 90),  # a page shown turned, its text drawn turned to match
        ((0, -1, 1, 0), (200, 720), 270),
        ((-1, 0, 0, -1), (540, 100), 180),  # upside down
    ],
)
def test_a_turned_table_is_read_as_records_like_an_upright_one(
    tmp_path: Path, matrix: tuple[int, int, int, int], origin: tuple[int, int], rotate: int
) -> None:
    path = tmp_path / "shipments.pdf"
    path.write_bytes(turned_pdf(matrix, origin, rotate))
    blocks = [s for s in load(path).sections if s.heading]
    assert blocks and all(s.text.startswith("# Quarterly shipments by port\n") for s in blocks)
    rows = "\n".join(s.text for s in blocks)
    assert "Port: Quay 3 | Crates: 39 | Inspector: Agent 3 | Berth: B3" in rows
    assert rows.count("Port: Quay ") == 8
