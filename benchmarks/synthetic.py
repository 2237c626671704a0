"""A deterministic synthetic corpus for scale benchmarks: Zipfian text, cheap vectors.

Word frequencies follow Zipf's law (exponent 1.07 over a 200k-word vocabulary, the shape
of English text), the most frequent words being real English function words so that
stopword handling matters as it does on real queries.  Queries are 2-5 content words
drawn from one chunk, so every query has a known matching chunk.  Vectors come from
hashing, not a model, so building an index measures the store and not the embedder.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from rag.embed.base import Embedder

VOCABULARY = 200_000
EXPONENT = 1.07
FUNCTION_WORDS = (
    "the of and to a in is that for it as was with be by on not he this are or his from at which but have "
    "an they you were her she there been one all we their has would when what if more no can out so said "
    "who will up about into them other than then some could these two may first its only over new"
).split()
_CONSONANTS = list("bcdfghjklmnprstvwz")
_VOWELS = list("aeiou")


def vocabulary(seed: int = 7) -> np.ndarray:
    """``VOCABULARY`` distinct words, most frequent first."""
    rng = np.random.default_rng(seed)
    syllables = np.array([c + v for c in _CONSONANTS for v in _VOWELS], dtype=object)
    words: list[str] = list(FUNCTION_WORDS)
    seen = set(words)
    while len(words) < VOCABULARY:
        # Two to four syllables per word: 90 ** 4 candidates, so few collisions.
        picks = rng.integers(0, len(syllables), size=(VOCABULARY, 4))
        counts = rng.integers(2, 5, size=VOCABULARY)
        for row, count in zip(picks, counts, strict=True):
            word = "".join(syllables[row[:count]])
            if word not in seen:
                seen.add(word)
                words.append(word)
                if len(words) == VOCABULARY:
                    break
    return np.array(words, dtype=object)


@dataclass
class Corpus:
    """Chunk texts generated in batches, the same for the same seed."""

    size: int
    seed: int = 1
    mean_words: int = 120
    files_per_chunk: float = 1 / 20  # 20 chunks per file on average

    def __post_init__(self) -> None:
        self.words = vocabulary()
        ranks = np.arange(1, VOCABULARY + 1, dtype=np.float64)
        weights = ranks**-EXPONENT
        self.cdf = np.cumsum(weights / weights.sum())
        self.embedder = HashEmbedder(self.words)

    def batches(self, batch: int = 10_000) -> Iterator[tuple[int, list[str], np.ndarray]]:
        """(first chunk number, texts, vectors) for every batch of chunks."""
        for start in range(0, self.size, batch):
            n = min(batch, self.size - start)
            rng = np.random.default_rng([self.seed, start])
            lengths = rng.integers(self.mean_words // 2, self.mean_words * 3 // 2 + 1, size=n)
            ids = np.searchsorted(self.cdf, rng.random(int(lengths.sum())))
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            texts = [" ".join(self.words[ids[o : o + length]]) for o, length in zip(offsets, lengths, strict=True)]
            # The vector of a chunk is that of its first words: cheap, and it shares words with
            # queries drawn from the chunk, so the nearest neighbours are meaningful.
            head = np.stack([ids[o : o + _HEAD] for o in offsets])
            yield start, texts, self.embedder.vectors(head)

    def file_of(self, number: int) -> str:
        """The (synthetic) file a chunk belongs to: consecutive chunks share a file."""
        return f"/corpus/f{int(number * self.files_per_chunk):07d}.txt"

    def queries(self, n: int, seed: int = 99) -> list[str]:
        """``n`` queries of 2-5 content words taken from random chunks."""
        rng = np.random.default_rng(seed)
        stop = len(FUNCTION_WORDS)
        out = []
        for _ in range(n):
            length = int(rng.integers(2, 6))
            ranks = np.searchsorted(self.cdf, rng.random(length * 4))
            content = [r for r in ranks if r >= stop][:length] or [stop]
            out.append(" ".join(str(self.words[r]) for r in content))
        return out


_HEAD = 16


class HashEmbedder(Embedder):
    """A deterministic stand-in for a model: a chunk's vector is the normalised sum of fixed
    random vectors of its first words.  Over 10,000 chunks a second on one core."""

    name = "synthetic-hash:v1"
    max_input_tokens = 512

    def __init__(self, words: np.ndarray, dimension: int = 384, buckets: int = 50_000) -> None:
        self.dimension = dimension
        self.buckets = buckets
        self.table = np.random.default_rng(3).standard_normal((buckets, dimension)).astype(np.float32)
        self.number = {str(w): i for i, w in enumerate(words)}

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """One vector per row of word ids."""
        out = self.table[ids % self.buckets].sum(axis=1)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def embed_query(self, text: str) -> np.ndarray:
        ids = [self.number[w] for w in text.lower().split() if w in self.number] or [0]
        return self.vectors(np.array([ids]))[0]

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.embed_query(text) for text in texts])
