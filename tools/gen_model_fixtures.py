#!/usr/bin/env python3
"""Reference data for tests/check_model.c: tiny GPT-2 and LLaMA models in
plain PyTorch (float32) with Hugging Face semantics, no `transformers`.

GPT-2: pre-LN, learned positions, GELU tanh ("gelu_new"), Conv1D weights
[in, out], fused c_attn, tied LM head. LLaMA: RMSNorm, RoPE (rotate_half),
SwiGLU, no biases, grouped-query attention (n_kv_head < n_head), separate
lm_head. Qwen2 flavour: the LLaMA model with q/k/v biases, tied embeddings
and rope_theta 1e6. Dropout 0.

For each model, tests/fixtures/model/<name>/ gets
  config.json        HF config
  model.safetensors  weights under HF names (float32)
  ref.safetensors    ids [B,T], targets [B*T] (-100 = ignored), valid_len [B]
                     (all float32, exact small integers), logits [B,T,V],
                     loss [1], grad.<param> for every parameter, losses [10]
                     (loss before each of 10 AdamW steps), logits_bidir
                     [B,T,V] (the same weights run as a bidirectional encoder)

Padding: row 1 is right-padded (valid_len 5 of T 8). Keys at t >= valid_len
are masked; as in mtft_attention, padded query rows give a zero attention
output (HF would attend to the valid keys there; those positions are padding
and their targets are ignored, so loss and gradients do not depend on it).

AdamW: torch.optim.AdamW(lr 1e-2, betas (0.9, 0.999), eps 1e-8), two
groups: tensors with ndim >= 2 get weight_decay 0.01, 1-D tensors (biases,
norm weights) 0 -- mtft_adamw's default rule.

Run with Debian's python3-torch:  /usr/bin/python3 tools/gen_model_fixtures.py
"""
import json
import math
import os
import sys

import torch

from fixture_util import gelu_new, gpt2_config, gpt2_params, save_f32

torch.manual_seed(1234)
torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "model")
B, T, V, NCTX, C, L = 2, 8, 64, 16, 32, 2
VALID = [8, 5]
STEPS = 10


def attention(q, k, v, causal, valid):
    """q [B,H,T,D], k/v [B,Hkv,T,D] -> [B,H,T,D]; masks like HF, padded
    query rows zeroed."""
    Bq, H, Tq, D = q.shape
    rep = H // k.shape[1]
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D)
    neg = torch.finfo(w.dtype).min
    keep = torch.ones(Bq, 1, Tq, Tq, dtype=torch.bool)
    if causal:
        keep = keep & torch.tril(torch.ones(Tq, Tq, dtype=torch.bool)).view(1, 1, Tq, Tq)
    kmask = (torch.arange(Tq).view(1, Tq) < torch.tensor(valid).view(Bq, 1)).view(Bq, 1, 1, Tq)
    keep = keep & kmask
    w = w.masked_fill(~keep, neg)
    p = torch.softmax(w, dim=-1)
    y = torch.matmul(p, v)
    qmask = (torch.arange(Tq).view(1, Tq) < torch.tensor(valid).view(Bq, 1)).view(Bq, 1, Tq, 1)
    return y * qmask


class GPT2:
    def __init__(self):
        F = 4 * C
        self.cfg = gpt2_config(V, NCTX, C, L, 4, F)
        self.H = 4
        p = gpt2_params(V, NCTX, C, L, F)
        self.params = [(n, t.requires_grad_()) for n, t in p]
        self.P = dict(self.params)

    def logits(self, ids, valid, causal=True):
        P, H, D = self.P, self.H, C // self.H
        x = P["wte.weight"][ids] + P["wpe.weight"][torch.arange(T)]
        for l in range(L):
            h = "h.%d." % l
            a = torch.nn.functional.layer_norm(x, (C,), P[h + "ln_1.weight"], P[h + "ln_1.bias"], 1e-5)
            qkv = a @ P[h + "attn.c_attn.weight"] + P[h + "attn.c_attn.bias"]
            q, k, v = qkv.split(C, dim=2)
            q, k, v = [t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v)]
            y = attention(q, k, v, causal, valid).transpose(1, 2).contiguous().view(B, T, C)
            x = x + (y @ P[h + "attn.c_proj.weight"] + P[h + "attn.c_proj.bias"])
            a = torch.nn.functional.layer_norm(x, (C,), P[h + "ln_2.weight"], P[h + "ln_2.bias"], 1e-5)
            a = gelu_new(a @ P[h + "mlp.c_fc.weight"] + P[h + "mlp.c_fc.bias"])
            x = x + (a @ P[h + "mlp.c_proj.weight"] + P[h + "mlp.c_proj.bias"])
        x = torch.nn.functional.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], 1e-5)
        return x @ P["wte.weight"].t()


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Llama:
    """qwen2=True: Qwen2 flavour: q/k/v biases, tied embeddings, theta 1e6."""

    def __init__(self, qwen2=False):
        F = 64
        self.H, self.Hkv, self.eps = 4, 2, 1e-6
        self.theta = 1e6 if qwen2 else 10000.0
        self.bias, self.tie = qwen2, qwen2
        self.cfg = {"model_type": "qwen2" if qwen2 else "llama", "vocab_size": V, "hidden_size": C,
                    "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": self.H,
                    "num_key_value_heads": self.Hkv, "rms_norm_eps": self.eps, "rope_theta": self.theta,
                    "max_position_embeddings": NCTX, "tie_word_embeddings": self.tie, "hidden_act": "silu",
                    "use_sliding_window": False,
                    "architectures": ["Qwen2ForCausalLM" if qwen2 else "LlamaForCausalLM"]}
        D = C // self.H
        p = []

        def mat(name, *shape, std=0.15):
            p.append((name, torch.randn(*shape) * std))

        def vec(name, n, base=1.0):
            p.append((name, base + 0.1 * torch.randn(n)))

        mat("model.embed_tokens.weight", V, C, std=0.5)
        for l in range(L):
            h = "model.layers.%d." % l
            vec(h + "input_layernorm.weight", C)
            mat(h + "self_attn.q_proj.weight", C, C, std=0.3)
            if self.bias:
                vec(h + "self_attn.q_proj.bias", C, 0.0)
            mat(h + "self_attn.k_proj.weight", self.Hkv * D, C, std=0.3)
            if self.bias:
                vec(h + "self_attn.k_proj.bias", self.Hkv * D, 0.0)
            mat(h + "self_attn.v_proj.weight", self.Hkv * D, C)
            if self.bias:
                vec(h + "self_attn.v_proj.bias", self.Hkv * D, 0.0)
            mat(h + "self_attn.o_proj.weight", C, C)
            vec(h + "post_attention_layernorm.weight", C)
            mat(h + "mlp.gate_proj.weight", F, C, std=0.2)
            mat(h + "mlp.up_proj.weight", F, C, std=0.2)
            mat(h + "mlp.down_proj.weight", C, F)
        vec("model.norm.weight", C)
        if not self.tie:
            mat("lm_head.weight", V, C, std=0.2)
        self.params = [(n, t.requires_grad_()) for n, t in p]
        self.P = dict(self.params)

    def rms(self, x, w):
        var = x.pow(2).mean(-1, keepdim=True)
        return w * (x * torch.rsqrt(var + self.eps))

    def logits(self, ids, valid, causal=True):
        P, H, Hkv, D = self.P, self.H, self.Hkv, C // self.H
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, D, 2).float() / D))
        freqs = torch.outer(torch.arange(T).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        x = P["model.embed_tokens.weight"][ids]
        for l in range(L):
            h = "model.layers.%d." % l
            a = self.rms(x, P[h + "input_layernorm.weight"])
            q, k, v = [a @ P[h + "self_attn.%s_proj.weight" % n].t() for n in "qkv"]
            if self.bias:
                q, k, v = [t + P[h + "self_attn.%s_proj.bias" % n] for t, n in zip((q, k, v), "qkv")]
            q = q.view(B, T, H, D).transpose(1, 2)
            k = k.view(B, T, Hkv, D).transpose(1, 2)
            v = v.view(B, T, Hkv, D).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            y = attention(q, k, v, causal, valid).transpose(1, 2).contiguous().view(B, T, C)
            x = x + y @ P[h + "self_attn.o_proj.weight"].t()
            a = self.rms(x, P[h + "post_attention_layernorm.weight"])
            g = torch.nn.functional.silu(a @ P[h + "mlp.gate_proj.weight"].t())
            x = x + (g * (a @ P[h + "mlp.up_proj.weight"].t())) @ P[h + "mlp.down_proj.weight"].t()
        x = self.rms(x, P["model.norm.weight"])
        return x @ P["model.embed_tokens.weight" if self.tie else "lm_head.weight"].t()


def build(name, model):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    ids = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    for b in range(B):
        targets[b, VALID[b]:] = -100
    ids[1, VALID[1]:] = 0  # padding token
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(model.cfg, f, indent=2)
        f.write("\n")
    save_f32(os.path.join(d, "model.safetensors"), model.params)
    init = [(n, t.detach().clone()) for n, t in model.params]

    def loss_of():
        lg = model.logits(ids, VALID)
        return lg, torch.nn.functional.cross_entropy(lg.view(-1, V), targets.view(-1), ignore_index=-100)

    lg, loss = loss_of()
    loss.backward()
    grads = [("grad." + n, t.grad.detach().clone()) for n, t in model.params]
    with torch.no_grad():
        bidir = model.logits(ids, VALID, causal=False)

    decay = [t for _, t in model.params if t.dim() >= 2]
    no_decay = [t for _, t in model.params if t.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    with torch.no_grad():
        for n, t in model.params:
            t.copy_(dict(init)[n])
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        _, l = loss_of()
        l.backward()
        opt.step()
        losses.append(l.item())
    ref = [("ids", ids.float()), ("targets", targets.view(-1).float()), ("valid_len", torch.tensor(VALID).float()),
           ("logits", lg), ("loss", loss.view(1)), ("losses", torch.tensor(losses)), ("logits_bidir", bidir)]
    save_f32(os.path.join(d, "ref.safetensors"), ref + grads)
    print("%s: loss %.6f, losses %s" % (name, loss.item(), " ".join("%.4f" % x for x in losses)))


if __name__ == "__main__":
    build("gpt2", GPT2())
    build("llama", Llama())
    build("qwen2", Llama(qwen2=True))
    sys.exit(0)
