"""Small helpers several test files share: a made-up hit, a loader's one-line failure,
waiting for a condition, and the ``slow`` embedder that subprocess scripts hold mid-ingest."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from rag.errors import DocumentError
from rag.ingest.loaders import load
from rag.results import Hit
from tests.conftest import HashEmbedder


def hit(
    n: int,
    text: str,
    source: str = "a.txt",
    *,
    page: int | None = None,
    relevance: float = 0.5,
    score: float | None = None,
) -> Hit:
    """A retrieved chunk ranked ``n`` (score ``1/n`` unless given), for answerer tests."""
    return Hit(
        rank=n,
        score=1 / n if score is None else score,
        chunk_id=f"c{n}",
        source=source,
        page=page,
        heading="",
        text=text,
        relevance=relevance,
    )


def failure(path: Path) -> str:
    """The reason ``load(path)`` gives for refusing the file, checked to be one line naming it."""
    with pytest.raises(DocumentError) as caught:
        load(path)
    error = caught.value
    assert error.path == str(path)
    assert "\n" not in str(error), "a reason must be one line"
    assert "Traceback" not in str(error)
    return error.reason


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class SlowEmbedder(HashEmbedder):
    """The hash embedder in small batches, calling ``before_batch(batches embedded so far)``
    first: the scripts that tests run in a subprocess hold an ingest there."""

    batch_size = 4

    def __init__(self, before_batch: Callable[[int], None]) -> None:
        # Its own provider name: a "hash:v1" index would be reopened with the plain HashEmbedder.
        super().__init__(provider="slow")
        self.before_batch = before_batch

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        self.before_batch(len(self.calls))
        return super().embed_batch(texts)


def register_slow(before_batch: Callable[[int], None]) -> None:
    """Register ``SlowEmbedder(before_batch)`` as the embedder called ``slow``."""
    from rag.embed import factory

    factory.register("slow", lambda model, settings: SlowEmbedder(before_batch))


def pdf_bytes(objects: Sequence[bytes]) -> bytes:
    """A PDF file of ``objects`` (numbered from 1, the catalog first), with its cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
