"""Checks a GGUF file Kiln exported against the GGUF spec with the `gguf` package
(llama.cpp's own Python reader, from PyPI): header, metadata types, tensor infos,
alignment and data offsets, and the stored blocks themselves, dequantized with gguf's
reference code and compared with a second export of the same model.

usage: check.py EXPORT.gguf REFERENCE.gguf
Prints one JSON object; exits non-zero on the first violation.
"""

import json
import sys

import numpy as np
import gguf
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import dequantize

path, reference_path = sys.argv[1], sys.argv[2]
reader = GGUFReader(path)
reference = GGUFReader(reference_path)


def field(r, key):
    f = r.fields.get(key)
    if f is None:
        raise SystemExit(f"{path}: metadata {key} missing")
    return f.contents()


arch = field(reader, "general.architecture")
assert arch == "llama", arch
blocks = field(reader, "llama.block_count")
heads = field(reader, "llama.attention.head_count")
kv_heads = field(reader, "llama.attention.head_count_kv")
width = field(reader, "llama.embedding_length")
tokens = field(reader, "tokenizer.ggml.tokens")
merges = field(reader, "tokenizer.ggml.merges")
types = field(reader, "tokenizer.ggml.token_type")
template = field(reader, "tokenizer.chat_template")
assert field(reader, "tokenizer.ggml.model") == "gpt2"
assert len(types) == len(tokens), (len(types), len(tokens))
assert "<|im_start|>" in template
eos = field(reader, "tokenizer.ggml.eos_token_id")
assert 0 <= eos < len(tokens)

names = {t.name: t for t in reader.tensors}
expected = {"token_embd.weight", "output_norm.weight"}
for i in range(blocks):
    for part in ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm",
                 "ffn_gate", "ffn_up", "ffn_down"]:
        expected.add(f"blk.{i}.{part}.weight")
missing = expected - set(names)
assert not missing, f"missing tensors {sorted(missing)[:5]}"
extra = set(names) - expected - {"output.weight", "rope_freqs.weight"}
assert not extra, f"unexpected tensors {sorted(extra)[:5]}"

alignment = reader.alignment
worst = 0.0
kinds = {}
for t in reader.tensors:
    kinds[t.tensor_type.name] = kinds.get(t.tensor_type.name, 0) + 1
    assert t.data_offset % alignment == 0, f"{t.name} at {t.data_offset} is not aligned to {alignment}"
    if len(t.shape) == 1:
        assert t.tensor_type == GGMLQuantizationType.F32, f"{t.name}: 1-D tensors are F32"
    values = dequantize(t.data, t.tensor_type).reshape(-1)
    r = next(x for x in reference.tensors if x.name == t.name)
    assert list(r.shape) == list(t.shape), (t.name, r.shape, t.shape)
    ref = dequantize(r.data, r.tensor_type).reshape(-1).astype(np.float64)
    scale = max(float(np.abs(ref).max()), 1e-12)
    err = float(np.abs(values.astype(np.float64) - ref).max()) / scale
    worst = max(worst, err)

q = names["blk.0.attn_q.weight"]
assert [int(d) for d in q.shape] == [width, heads * (width // heads)], q.shape
k = names["blk.0.attn_k.weight"]
assert int(k.shape[1]) == kv_heads * (width // heads), k.shape

print(json.dumps({
    "gguf_version": int(reader.fields["GGUF.version"].contents()),
    "tensors": len(reader.tensors),
    "types": kinds,
    "alignment": int(alignment),
    "tokens": len(tokens),
    "merges": len(merges),
    "max_relative_error_vs_reference": worst,
}))
