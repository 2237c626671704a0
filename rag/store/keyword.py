"""The keyword half of an index: BM25 over chunks in a Tantivy index folder.

Tantivy ranks with block-max WAND, so a query reads only the posting blocks that can still
reach the top k; SQLite FTS5 scored every chunk sharing a word with the query and grew
linearly with the index (``benchmarks/keyword_engines.py`` has the comparison).

The index holds chunk ids, their stemmed words (indexed, not stored) and what filters need
(path, kind, page).  Words are split and stemmed as FTS5 did it, and terms weighed with FTS5's
idf, so rankings match rag 0.1's.  It follows the same exactly-once rule as Chroma: an id is added here only
after the manifest records it as pending, and removed from the manifest only after it is
deleted here, so ``settle`` can always finish an interrupted write.  Every write commits
before it returns; Tantivy's commit is atomic, so a crash leaves the last commit intact.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import Stemmer
import tantivy

# Bump when the schema or analyzer changes: an index written by another version is rebuilt.
FORMAT = "tantivy-3"
_ANALYZER = "rag_terms"

# Words that carry no topic; dropping them from keyword queries keeps BM25 from scoring
# half the index on "the" and "of".  Kept short on purpose: negations and question words
# that change meaning ("not", "without") stay.  Documents keep every word, so their
# lengths (which BM25 normalises by) are the documents' own.
STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have how i if
    in into is it its me my of on or our so such than that the their them then there these
    they this those to was we were what when where which who whom why will with would you
    your about also any some only other over under up out very just more most much many may
    might must shall should s t""".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


def keyword_terms(text: str) -> list[str]:
    """Distinct lower-cased query words, stopwords removed (all words if that leaves none)."""
    words = [w.lower() for w in _WORD.findall(text)]
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))


class KeywordChunk(Protocol):
    """What the keyword index reads from a chunk (``ChunkRecord`` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def page(self) -> int | None: ...
    @property
    def heading(self) -> str: ...
    @property
    def text(self) -> str: ...


# FTS5's tokenizer, "porter unicode61 remove_diacritics 2": runs of letters and digits,
# lower-cased, accents dropped, then Martin Porter's original stemmer.  Tantivy's only English
# stemmer is Snowball's Porter2, which keeps the "s" of a plural without vowels ("RXRs",
# "SNPs", "DCs"), so a query naming one missed chunks naming the other: on SciFact that lost
# 0.7 points of keyword Recall@100 and 0.2 of hybrid nDCG@10.  So the index stems in Python
# and Tantivy only splits the stemmed text on spaces.  Adding SciFact's chunks took 60 us of
# CPU each against 49 with Tantivy's stemmer (115 in a fresh process, before the cache fills).
_TOKEN = re.compile(r"[^\W_]+")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
#: Longer tokens (base64, hashes, run-together text) are left out of the index.
MAX_TOKEN = 64
_stemmer = Stemmer.Stemmer("porter")
_stem_lock = threading.Lock()
# Word -> stem.  Text repeats its words, so nearly every lookup hits and stemming costs a
# dictionary read; cleared when full, so odd tokens cannot grow it without bound.
_stems: dict[str, str] = {}
_STEMS_MAX = 250_000  # about 35 MB


def index_terms(text: str) -> list[str]:
    """The words of ``text`` as the index holds them, in order: lower-cased, accents dropped, stemmed."""
    if not text.isascii():
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
    words = _TOKEN.findall(text.lower())
    if words and max(map(len, words)) >= MAX_TOKEN:
        words = [w for w in words if len(w) < MAX_TOKEN]
    new = [w for w in set(words) if w not in _stems]
    if new:
        _remember(new)
    try:
        return list(map(_stems.__getitem__, words))
    except KeyError:  # another thread emptied the cache meanwhile
        with _stem_lock:
            return list(_stemmer.stemWords(words))


def _remember(words: list[str]) -> None:
    """Stem words not seen before into the cache: a chunk brings a few, the rest are known."""
    with _stem_lock:  # a Snowball stemmer must not run in two threads at once
        if len(_stems) + len(words) > _STEMS_MAX:
            _stems.clear()
        _stems.update(zip(words, _stemmer.stemWords(words), strict=True))


def rsj_boost(docs: int, holding: int) -> float:
    """What turns Tantivy's idf for a term in ``holding`` of ``docs`` chunks into FTS5's.

    Tantivy (like Lucene) weighs a term by ln(1 + (N - n + 0.5) / (n + 0.5)), which leaves a
    word found in most chunks half the weight of one found in a third of them.  FTS5's bm25()
    used Robertson and Spärck Jones' ln((N - n + 0.5) / (n + 0.5)), floored at 1e-6: a word in
    over half the chunks says next to nothing, so the chunks holding the query's rarer words
    rank first.  On SciFact it gave back 0.3 points of keyword Recall@100 and 0.1 of hybrid
    nDCG@10 (test and train alike).  A boost keeps block-max WAND: Tantivy folds it into each
    term's BM25 weight.
    """
    odds = (docs - holding + 0.5) / (holding + 0.5)
    return max(math.log(odds), 1e-6) / math.log1p(odds)


def _schema() -> Any:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("path", tokenizer_name="raw", index_option="basic")
    builder.add_text_field("kind", tokenizer_name="raw", index_option="basic")
    builder.add_integer_field("page", indexed=True, fast=True)
    # Positions too: BM25 needs only frequencies, but the answerer counts chunks holding a
    # phrase (``document_frequencies``).  Queries never read them, so search speed is the same.
    builder.add_text_field("body", tokenizer_name=_ANALYZER, index_option="position")
    return builder.build()


class KeywordIndex:
    """BM25 search over one index's chunks.  Searches may run in any thread or process;
    writes come from the one process holding the index's write lock."""

    #: Writer memory; Tantivy flushes a segment each time it fills.
    heap_bytes = 128 * 1024 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._schema = _schema()
        self._lock = threading.Lock()
        self._writer: Any = None
        self._seen: tuple[int, int] | None = None
        self._index = self._open()

    def _open(self) -> Any:
        marker = self.path / "format.json"
        current = marker.exists() and json.loads(marker.read_text()).get("format") == FORMAT
        if not current and any(self.path.iterdir()):
            # Another version's files: start empty; the caller rebuilds from the manifest.
            shutil.rmtree(self.path)
            self.path.mkdir(parents=True)
        index = tantivy.Index(self._schema, path=str(self.path), reuse=True)
        index.register_tokenizer(_ANALYZER, tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
        index.config_reader(reload_policy="Manual")
        if not current:
            marker.write_text(json.dumps({"format": FORMAT}))
        return index

    @property
    def fresh(self) -> bool:
        """True when the folder held no index of this format (it needs filling from the manifest)."""
        return self.count() == 0 and not (self.path / "filled").exists()

    def mark_filled(self) -> None:
        """Record that the index holds every live chunk (so an empty index is not refilled)."""
        (self.path / "filled").touch()

    def close(self) -> None:
        self.release()

    # --- writing --------------------------------------------------------------------------

    def _get_writer(self) -> Any:
        if self._writer is None:
            # One thread: the machine's other core serves queries and Chroma.
            self._writer = self._index.writer(self.heap_bytes, 1)
        return self._writer

    def release(self) -> None:
        """Let go of Tantivy's writer lock (held from the first write until now)."""
        with self._lock:
            if self._writer is not None:
                self._writer.wait_merging_threads()
                self._writer = None

    def add(self, chunks: Iterable[KeywordChunk], *, commit: bool = True) -> int:
        """Index chunks (ids must not be in the index already); returns how many."""
        n = 0
        with self._lock:
            writer = self._get_writer()
            for chunk in chunks:
                doc = tantivy.Document()
                doc.add_text("id", chunk.id)
                doc.add_text("path", chunk.path)
                doc.add_text("kind", chunk.kind)
                if chunk.page is not None:
                    doc.add_integer("page", chunk.page)
                text = f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text
                doc.add_text("body", " ".join(index_terms(text)))
                writer.add_document(doc)
                n += 1
            if commit:
                writer.commit()
        return n

    def delete(self, ids: Iterable[str], *, commit: bool = True) -> None:
        """Remove chunks by id; ids it does not hold are ignored."""
        with self._lock:
            writer = self._get_writer()
            for chunk_id in ids:
                writer.delete_documents_by_term("id", chunk_id)
            if commit:
                writer.commit()

    def commit(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.commit()

    def clear(self) -> None:
        with self._lock:
            writer = self._get_writer()
            writer.delete_all_documents()
            writer.commit()
        (self.path / "filled").unlink(missing_ok=True)

    # --- reading --------------------------------------------------------------------------

    def _searcher(self) -> Any:
        # A commit (from this process or another) rewrites meta.json; reload only then.
        try:
            stat = os.stat(self.path / "meta.json")
            seen = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            seen = None
        if seen != self._seen:
            self._index.reload()
            self._seen = seen
        return self._index.searcher()

    def count(self) -> int:
        return int(self._searcher().num_docs)

    def ids(self) -> set[str]:
        """Every id held (for checks and tests; reads the whole index)."""
        searcher = self._searcher()
        found: set[str] = set()
        n = int(searcher.num_docs)
        if n:
            for _, address in searcher.search(tantivy.Query.all_query(), limit=n, count=False).hits:
                found.add(searcher.doc(address)["id"][0])
        return found

    def terms(self, text: str) -> list[str]:
        """The distinct index terms of a query: stopwords dropped, stemmed."""
        return list(dict.fromkeys(index_terms(" ".join(keyword_terms(text)))))

    def document_frequencies(self, phrases: Sequence[str]) -> dict[str, int]:
        """How many chunks hold each phrase: its words in a row, stemmed as the index stems them.

        The answerer reads rarity from these counts: a word in few chunks says what a
        question is about, and one in none names something the documents never mention.
        """
        searcher = self._searcher()
        counts: dict[str, int] = {}
        for phrase in dict.fromkeys(phrases):
            tokens = index_terms(phrase)
            if not tokens:
                continue
            if len(tokens) == 1:
                query = tantivy.Query.term_query(self._schema, "body", tokens[0])
            else:
                words: list[str | tuple[int, str]] = list(tokens)
                query = tantivy.Query.phrase_query(self._schema, "body", words)
            counts[phrase] = int(searcher.search(query, limit=1, count=True).count)
        return counts

    def search(
        self,
        query: str,
        k: int,
        *,
        paths: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        pages: tuple[int | None, int | None] | None = None,
    ) -> list[tuple[str, float]]:
        """BM25 (k1 1.2, b 0.75, FTS5's idf): (id, score) best first.  Filters restrict the
        matches before ranking, so the top k are the best k that pass them."""
        terms = self.terms(query)
        if not terms or k <= 0 or (paths is not None and not paths) or (kinds is not None and not kinds):
            return []
        schema = self._schema
        searcher = self._searcher()
        docs = int(searcher.num_docs)
        should = [
            (
                tantivy.Occur.Should,
                tantivy.Query.boost_query(
                    tantivy.Query.term_query(schema, "body", t), rsj_boost(docs, int(searcher.doc_freq("body", t)))
                ),
            )
            for t in terms
        ]
        text_query = should[0][1] if len(should) == 1 else tantivy.Query.boolean_query(should)
        filters = []
        if paths is not None:
            filters.append(tantivy.Query.term_set_query(schema, "path", list(paths)))
        if kinds is not None:
            filters.append(tantivy.Query.term_set_query(schema, "kind", list(kinds)))
        if pages is not None and pages != (None, None):
            low, high = pages
            filters.append(tantivy.Query.range_query(schema, "page", tantivy.FieldType.Integer, low, high))
        if filters:
            # Zero-scored clauses: a filter must not move a chunk's BM25 score.
            clauses = [(tantivy.Occur.Must, text_query)]
            clauses += [(tantivy.Occur.Must, tantivy.Query.const_score_query(f, 0.0)) for f in filters]
            text_query = tantivy.Query.boolean_query(clauses)
        hits = searcher.search(text_query, limit=k, count=False).hits
        return [(searcher.doc(address)["id"][0], float(score)) for score, address in hits]
