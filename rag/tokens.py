"""Exact token counts for OpenAI models, offline.

``tiktoken.get_encoding`` downloads its BPE tables on first use and fails without a
network, so rag ships the two tables it needs (``rag/data/*.tiktoken.gz``, see
``rag/data/SOURCE.md``) and builds ``tiktoken.Encoding`` objects from them.

Nothing here raises because a table is missing or damaged: counting then falls back to
``estimate_tokens``, which over-estimates, and logs one warning.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from tiktoken import Encoding

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
"""Where the vendored BPE tables live (tests point this elsewhere)."""

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"


def estimate_tokens(text: str) -> int:
    """A deliberately high token estimate for when no tokenizer is available.

    English averages about 4 characters per BPE token; word-piece tokenizers split
    numbers and rare words finely, so assume 3 and add one per whitespace-separated word
    of punctuation-heavy text.
    """
    return len(text) // 3 + text.count(" ") // 4 + 1


@dataclass(frozen=True)
class _Spec:
    file: str
    sha256: str  # of the uncompressed table, as tiktoken_ext.openai_public expects
    pat_str: str
    special_tokens: dict[str, int]


# Copied from tiktoken_ext/openai_public.py (tiktoken 0.14, MIT); these encodings are
# frozen, and tests/test_tokens.py checks the copy against the installed tiktoken.
_SPECS: dict[str, _Spec] = {
    "cl100k_base": _Spec(
        file="cl100k_base.tiktoken.gz",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
            r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            _ENDOFTEXT: 100257,
            _FIM_PREFIX: 100258,
            _FIM_MIDDLE: 100259,
            _FIM_SUFFIX: 100260,
            _ENDOFPROMPT: 100276,
        },
    ),
    "o200k_base": _Spec(
        file="o200k_base.tiktoken.gz",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
}

# Longest matching prefix wins.  Everything not listed (Ollama's llama3, nomic-embed-text,
# ...) uses cl100k: not the model's own tokenizer, but modern BPE vocabularies of 100k+
# tokens land within roughly 10-15% of it on English text, and chunk limits leave slack.
_PREFIX_TO_ENCODING: dict[str, str] = {
    "gpt-4o": "o200k_base",
    "chatgpt-4o": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4.5": "o200k_base",
    "gpt-5": "o200k_base",
    "gpt-oss": "o200k_base",  # o200k_harmony: same table, extra special tokens only
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4": "o200k_base",
    "ft:gpt-4o": "o200k_base",
    "ft:gpt-4.1": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "gpt-35": "cl100k_base",
    "text-embedding-": "cl100k_base",
    "ft:gpt-4": "cl100k_base",
    "ft:gpt-3.5": "cl100k_base",
}
DEFAULT_ENCODING = "cl100k_base"

# Prompt budget of known chat models (tokens).  gpt-5's window is 400k, of which at most
# 272k may be input; we report the input budget because that is what callers fill.
_CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "chatgpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.5": 128_000,
    "gpt-5": 272_000,
    "gpt-4-turbo": 128_000,
    "gpt-4-32k": 32_768,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "o1": 200_000,
    "o1-mini": 128_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "text-embedding-": 8_192,
}
DEFAULT_CONTEXT_WINDOW = 8_192

_lock = threading.Lock()
_cache: dict[str, Encoding | None] = {}


def encoding_name_for_model(model: str) -> str:
    """The tiktoken encoding name for ``model``; unknown models get ``cl100k_base``."""
    return _longest_prefix(_PREFIX_TO_ENCODING, _bare(model)) or DEFAULT_ENCODING


def get_encoding(name: str) -> Encoding | None:
    """The named encoding built from the vendored table, or None when it cannot be loaded."""
    with _lock:  # loading takes ~0.3 s; do it once even when embed threads race here
        if name not in _cache:
            _cache[name] = _load(name)
        return _cache[name]


def encoding_for_model(model: str) -> Encoding | None:
    """The encoding ``model`` uses (cl100k for unknown models), or None if unavailable."""
    return get_encoding(encoding_name_for_model(model))


def count_tokens(text: str, model: str) -> int:
    """Tokens in ``text`` as ``model`` counts them (special tokens count as plain text)."""
    enc = encoding_for_model(model)
    return len(enc.encode_ordinary(text)) if enc is not None else estimate_tokens(text)


def count_tokens_batch(texts: Sequence[str], model: str) -> list[int]:
    """``count_tokens`` for many texts.

    A plain loop on purpose: tiktoken 0.14 holds the GIL while encoding, so
    ``encode_ordinary_batch`` only adds its thread pool's overhead (measured 4x slower on
    3,000 short texts, 1.7x on 36 texts of 8k tokens).
    """
    enc = encoding_for_model(model)
    if enc is None:
        return [estimate_tokens(t) for t in texts]
    return [len(enc.encode_ordinary(t)) for t in texts]


def truncate(text: str, model: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` that is at most ``max_tokens`` tokens."""
    if max_tokens <= 0:
        return ""
    enc = encoding_for_model(model)
    if enc is None:
        return _truncate_estimate(text, max_tokens)
    tokens = enc.encode_ordinary(text)
    keep = max_tokens
    while len(tokens) > max_tokens:
        # Cutting may split a multi-byte character (dropped) or re-tokenise the last word
        # differently, so re-count and cut one more token in the rare case it grew.
        text = enc.decode_bytes(tokens[:keep]).decode("utf-8", errors="ignore")
        tokens = enc.encode_ordinary(text)
        keep -= 1
    return text


def context_window(model: str) -> int:
    """Prompt budget of a known chat model; a conservative 8192 for unknown ones."""
    return _longest_prefix(_CONTEXT_WINDOWS, _bare(model)) or DEFAULT_CONTEXT_WINDOW


def _truncate_estimate(text: str, max_tokens: int) -> str:
    # estimate_tokens grows with prefix length, so binary-search the longest fitting prefix.
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate_tokens(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


_T = TypeVar("_T")
_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def _bare(model: str) -> str:
    # "openai/gpt-4o" (routers) and "gpt-4o-2024-08-06" (snapshots) name the same family.
    return _DATE_SUFFIX.sub("", model.rsplit("/", 1)[-1].strip().lower())


def _longest_prefix(table: dict[str, _T], key: str) -> _T | None:
    best = max((p for p in table if key.startswith(p)), key=len, default=None)
    return table[best] if best is not None else None


_warned: set[str] = set()


def _load(name: str) -> Encoding | None:
    spec = _SPECS.get(name)
    path = DATA_DIR / spec.file if spec else None
    try:
        if spec is None or path is None:
            raise LookupError(f"no vendored table for encoding {name!r}")
        import tiktoken

        raw = gzip.decompress(path.read_bytes())
        if hashlib.sha256(raw).hexdigest() != spec.sha256:
            raise ValueError(f"{path} does not match its expected sha256")
        ranks = _parse_ranks(raw)
        return tiktoken.Encoding(
            name=name, pat_str=spec.pat_str, mergeable_ranks=ranks, special_tokens=spec.special_tokens
        )
    except Exception as exc:  # any failure means "estimate instead", never a crash
        if name not in _warned:
            _warned.add(name)
            log.warning("token counts for %s are estimated: cannot load its table (%s)", name, exc)
        return None


def _parse_ranks(raw: bytes) -> dict[bytes, int]:
    import base64

    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _clear_cache() -> None:
    """Forget loaded encodings and warnings (for tests)."""
    with _lock:
        _cache.clear()
        _warned.clear()
