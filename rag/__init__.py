"""rag: ask your documents.

>>> from rag import Store
>>> store = Store()                         # doctest: +SKIP
>>> notes = store.index("notes")            # doctest: +SKIP
>>> notes.ingest("docs/")                   # doctest: +SKIP
>>> print(notes.ask("What changed in 2023?"))   # doctest: +SKIP
"""

import os
from importlib.metadata import PackageNotFoundError, version

# ONNX Runtime 1.29+ keeps telemetry (a device id, the CPU, each session) in ~/.cache and
# uploads it when it can: not what an offline tool's users expect.  It reads this only
# before it is first imported, so it is set here; a user's own value is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

try:
    __version__ = version("rag-ask")  # the distribution's name ("rag" on PyPI is someone else's)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

from rag.answer.base import Turn
from rag.engine import AnswerStream, Engine, IndexInfo
from rag.errors import RagError
from rag.home import Store
from rag.results import Answer, Citation, Document, FileProblem, Hit, Hits, IngestReport
from rag.retrieve.search import Filters
from rag.settings import Settings
from rag.usage import Usage

__all__ = [
    "Answer",
    "AnswerStream",
    "Citation",
    "Document",
    "Engine",
    "FileProblem",
    "Filters",
    "Hit",
    "Hits",
    "IndexInfo",
    "IngestReport",
    "RagError",
    "Settings",
    "Store",
    "Turn",
    "Usage",
    "__version__",
]
