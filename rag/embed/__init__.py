"""Text to vectors: the local ONNX model or an OpenAI-compatible API, batched by one caller."""
