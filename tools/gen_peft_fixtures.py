#!/usr/bin/env python3
"""Reference data for tests/check_peft_parity.c: a tiny GPT-2 in plain
PyTorch (float32, HF semantics, no `transformers`) with two task-specific
LoRA adapters written with PEFT's names and maths (the `peft` package is not
needed):

  PEFT LoraLayer on a GPT-2 Conv1D (fan_in_fan_out=True): lora_A is an
  nn.Linear(in, r) (weight [r, in]), lora_B an nn.Linear(r, out) (weight
  [out, r]); forward: result = x @ W + b + lora_B(lora_A(dropout(x))) * scaling,
  scaling = lora_alpha / r (use_rslora: lora_alpha / sqrt(r)).
  Init (reset_lora_parameters): kaiming_uniform_(lora_A, a=sqrt(5)), lora_B
  zeros. Here B is then filled with random values, as after training, so the
  adapters change the output.

Adapters (target_modules ["c_attn", "c_fc"], i.e. attn.c_attn and mlp.c_fc):
  task0: r 4, lora_alpha 8                       (scale 2)
  task1: r 2, lora_alpha 3, use_rslora           (scale 3/sqrt 2)
Saved as PEFT saves them: <task>/adapter_model.safetensors with tensors
"base_model.model.transformer.h.N.<module>.lora_{A,B}.weight" and
<task>/adapter_config.json.

Mixed batch: B=4 rows of T=8 tokens with task ids [1, 0, 1, 0] (not
grouped). Loss of task k = mean next-token cross-entropy over its rows
(targets = ids shifted left, last position -100); total = loss0 + loss1;
one backward. ref.safetensors holds ids [B,T], task_ids [B], targets [B,T]
(float32 exact integers), loss0, loss1 [1], and grad.<task>.<peft name> for
every LoRA tensor.

Run with Debian's python3-torch:  /usr/bin/python3 tools/gen_peft_fixtures.py
"""
import json
import math
import os

import torch

from fixture_util import gelu_new, gpt2_config, gpt2_params, save_f32

torch.manual_seed(4321)
torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "peft")
B, T, V, NCTX, C, L, H = 4, 8, 64, 16, 32, 2, 4
F = 4 * C
TASK_IDS = [1, 0, 1, 0]
ADAPTERS = [dict(r=4, alpha=8.0, rslora=False), dict(r=2, alpha=3.0, rslora=True)]
TARGETS = ["c_attn", "c_fc"]


def base_params():
    return dict(gpt2_params(V, NCTX, C, L, F))


class LoraConv1D:
    """PEFT's LoRA around a GPT-2 Conv1D weight W [in, out]."""

    def __init__(self, w, b, r, alpha, rslora):
        self.w, self.b = w, b
        fin, fout = w.shape
        self.A = torch.empty(r, fin)
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # reset_lora_parameters
        self.B = torch.randn(fout, r) * 0.1                     # "trained" (PEFT init is zeros)
        self.A.requires_grad_()
        self.B.requires_grad_()
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r

    def __call__(self, x):
        base = x @ self.w + self.b
        lora = torch.nn.functional.linear(torch.nn.functional.linear(x, self.A), self.B)
        return base + lora * self.scaling


def forward(P, loras, ids):
    """ids [n, T] for one task's rows; loras: {module path: LoraConv1D}."""
    n = ids.shape[0]
    D = C // H
    x = P["wte.weight"][ids] + P["wpe.weight"][torch.arange(T)]

    def proj(l, name, a):
        key = "h.%d.%s" % (l, name)
        if key in loras:
            return loras[key](a)
        return a @ P[key + ".weight"] + P[key + ".bias"]

    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        h = "h.%d." % l
        a = torch.nn.functional.layer_norm(x, (C,), P[h + "ln_1.weight"], P[h + "ln_1.bias"], 1e-5)
        q, k, v = proj(l, "attn.c_attn", a).split(C, dim=2)
        q, k, v = [t.view(n, T, H, D).transpose(1, 2) for t in (q, k, v)]
        w = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        w = w.masked_fill(~causal, torch.finfo(w.dtype).min)
        y = (torch.softmax(w, dim=-1) @ v).transpose(1, 2).contiguous().view(n, T, C)
        x = x + proj(l, "attn.c_proj", y)
        a = torch.nn.functional.layer_norm(x, (C,), P[h + "ln_2.weight"], P[h + "ln_2.bias"], 1e-5)
        x = x + proj(l, "mlp.c_proj", gelu_new(proj(l, "mlp.c_fc", a)))
    x = torch.nn.functional.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], 1e-5)
    return x @ P["wte.weight"].t()


def main():
    os.makedirs(os.path.join(OUT, "gpt2"), exist_ok=True)
    P = base_params()
    cfg = gpt2_config(V, NCTX, C, L, H, F)
    with open(os.path.join(OUT, "gpt2", "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_f32(os.path.join(OUT, "gpt2", "model.safetensors"), sorted(P.items()))

    tasks = []
    for t, ad in enumerate(ADAPTERS):
        loras = {}
        for l in range(L):
            for mod in ("attn.c_attn", "mlp.c_fc"):
                key = "h.%d.%s" % (l, mod)
                loras[key] = LoraConv1D(P[key + ".weight"], P[key + ".bias"], ad["r"], ad["alpha"], ad["rslora"])
        tasks.append(loras)
        d = os.path.join(OUT, "task%d" % t)
        os.makedirs(d, exist_ok=True)
        tensors = []
        for key, lo in loras.items():
            tensors.append(("base_model.model.transformer.%s.lora_A.weight" % key, lo.A))
            tensors.append(("base_model.model.transformer.%s.lora_B.weight" % key, lo.B))
        save_f32(os.path.join(d, "adapter_model.safetensors"), tensors)
        conf = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny-gpt2",
                "r": ad["r"], "lora_alpha": ad["alpha"], "lora_dropout": 0.0, "use_rslora": ad["rslora"],
                "target_modules": TARGETS, "fan_in_fan_out": True, "bias": "none", "layers_to_transform": None,
                "layers_pattern": None, "init_lora_weights": True, "inference_mode": True, "modules_to_save": None,
                "revision": None, "rank_pattern": {}, "alpha_pattern": {}, "use_dora": False}
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump(conf, f, indent=2)

    ids = torch.randint(0, V, (B, T))
    targets = torch.full((B, T), -100, dtype=torch.long)
    targets[:, :-1] = ids[:, 1:]
    losses = []
    total = 0.0
    for t in range(len(ADAPTERS)):
        rows = [b for b in range(B) if TASK_IDS[b] == t]
        logits = forward(P, tasks[t], ids[rows])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets[rows].reshape(-1), ignore_index=-100)
        losses.append(loss)
        total = total + loss
    total.backward()
    ref = [("ids", ids.float()), ("task_ids", torch.tensor(TASK_IDS).float()), ("targets", targets.float()),
           ("loss0", losses[0].detach().view(1)), ("loss1", losses[1].detach().view(1))]
    for t, loras in enumerate(tasks):
        for key, lo in loras.items():
            ref.append(("grad.task%d.base_model.model.transformer.%s.lora_A.weight" % (t, key), lo.A.grad))
            ref.append(("grad.task%d.base_model.model.transformer.%s.lora_B.weight" % (t, key), lo.B.grad))
    save_f32(os.path.join(OUT, "ref.safetensors"), ref)
    print("losses", [float(l) for l in losses])


if __name__ == "__main__":
    main()
