"""Helpers shared by the PyTorch fixture generators (tools/gen_*_fixtures.py).

  write_safetensors(path, header, blobs)  the safetensors container: 8-byte
        little-endian header length, compact JSON header padded with spaces to
        a multiple of 8, then the tensors' bytes in order. `header` is written
        in its own key order (callers decide where "__metadata__" goes).
  save_f32(path, tensors, meta=None)      [(name, tensor)] as F32 in list
        order, "__metadata__" ({"format": "pt"} by default) last.
  gelu_new(x)                             GPT-2's tanh GELU.
  gpt2_config(...), gpt2_params(...)      a tiny HF GPT-2: its config.json and
        its weights [(HF name, tensor)] drawn from torch's global generator in
        a fixed order (so a seed gives the same weights in every generator).

Importable because Python puts a script's own directory (tools/) on sys.path.
"""
import json
import math
import struct

import torch


def write_safetensors(path, header, blobs):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def save_f32(path, tensors, meta=None):
    """tensors: list of (name, tensor), written as float32 in list order."""
    header, offs, blobs = {}, 0, []
    for name, t in tensors:
        b = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offs, offs + len(b)]}
        offs += len(b)
        blobs.append(b)
    header["__metadata__"] = meta or {"format": "pt"}
    write_safetensors(path, header, blobs)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gpt2_config(V, NCTX, C, L, H, F):
    return {"model_type": "gpt2", "vocab_size": V, "n_positions": NCTX, "n_ctx": NCTX, "n_embd": C,
            "n_layer": L, "n_head": H, "n_inner": F, "layer_norm_epsilon": 1e-5,
            "activation_function": "gelu_new", "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
            "tie_word_embeddings": True, "architectures": ["GPT2LMHeadModel"]}


def gpt2_params(V, NCTX, C, L, F):
    """GPT-2 weights under HF names (Conv1D weights [in, out]): matrices
    N(0, std^2), norm weights 1 + 0.1 N(0, 1), biases 0.1 N(0, 1)."""
    p = []

    def mat(name, *shape, std=0.1):
        p.append((name, torch.randn(*shape) * std))

    def vec(name, n, base):
        p.append((name, base + 0.1 * torch.randn(n)))

    mat("wte.weight", V, C, std=0.2)
    mat("wpe.weight", NCTX, C, std=0.1)
    for l in range(L):
        h = "h.%d." % l
        vec(h + "ln_1.weight", C, 1.0)
        vec(h + "ln_1.bias", C, 0.0)
        mat(h + "attn.c_attn.weight", C, 3 * C, std=0.2)
        vec(h + "attn.c_attn.bias", 3 * C, 0.0)
        mat(h + "attn.c_proj.weight", C, C)
        vec(h + "attn.c_proj.bias", C, 0.0)
        vec(h + "ln_2.weight", C, 1.0)
        vec(h + "ln_2.bias", C, 0.0)
        mat(h + "mlp.c_fc.weight", C, F)
        vec(h + "mlp.c_fc.bias", F, 0.0)
        mat(h + "mlp.c_proj.weight", F, C)
        vec(h + "mlp.c_proj.bias", C, 0.0)
    vec("ln_f.weight", C, 1.0)
    vec("ln_f.bias", C, 0.0)
    return p
