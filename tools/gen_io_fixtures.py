#!/usr/bin/python3
"""Write the safetensors fixtures of tests/check_io.c with PyTorch.

The `safetensors` package is not needed: the format is written by hand
(tools/fixture_util.py: 8-byte little-endian header length, JSON header padded with spaces to a
multiple of 8, then the tensors' bytes), the way huggingface/safetensors
lays it out (tensors ordered by dtype size, largest first, then by name).

Each F16 / BF16 / F64 tensor has a companion "<name>_ref" in F32 holding
PyTorch's own conversion (t.float()), which the C reader must reproduce
bit for bit (F64 rounds to nearest in both).

Run from the repository root:  /usr/bin/python3 tools/gen_io_fixtures.py
"""
import os
import sys

import torch

from fixture_util import write_safetensors

DTYPES = {torch.float32: ("F32", 4), torch.float16: ("F16", 2), torch.bfloat16: ("BF16", 2),
          torch.float64: ("F64", 8), torch.int32: ("I32", 4)}


def raw_bytes(t):
    return bytes(t.contiguous().reshape(-1).view(torch.uint8).tolist())


def save(path, tensors, metadata=None):
    order = sorted(tensors, key=lambda k: (-DTYPES[tensors[k].dtype][1], k))
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in order:
        t = tensors[name]
        b = raw_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype][0], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    write_safetensors(path, header, blobs)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "tests", "fixtures", "io")
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    specials = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0, 2.0 ** -24, 65504.0,
                             6.0e-5, -3.0e-7, 1.0 / 3.0, -2.5])
    t = {}
    t["w_f32"] = torch.randn(3, 4, generator=g)
    h = torch.cat([torch.randn(10, generator=g) * 4, specials]).to(torch.float16).reshape(4, 5)
    t["w_f16"] = h
    t["w_f16_ref"] = h.float()
    bspec = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0, 1e-40, 3.0e38, 1.0 / 3.0])
    b = torch.cat([torch.randn(7, generator=g) * 100, bspec]).to(torch.bfloat16).reshape(2, 7)
    t["w_bf16"] = b
    t["w_bf16_ref"] = b.float()
    d = torch.cat([torch.randn(4, generator=g, dtype=torch.float64), torch.tensor([1e-50, 1e300], dtype=torch.float64)])
    t["w_f64"] = d.reshape(2, 3)
    t["w_f64_ref"] = d.float().reshape(2, 3)
    t["scalar"] = torch.tensor(2.75)
    t["empty"] = torch.zeros(0, 3)
    t["ids_i32"] = torch.arange(6, dtype=torch.int32).reshape(2, 3)
    save(os.path.join(out, "torch_mixed.safetensors"), t, {"format": "pt", "source": "tools/gen_io_fixtures.py"})
    print("wrote", os.path.join(out, "torch_mixed.safetensors"), file=sys.stderr)


if __name__ == "__main__":
    main()
