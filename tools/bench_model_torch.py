#!/usr/bin/env python3
"""PyTorch counterpart of bench/bench_model.c: one training step (forward,
cross-entropy, backward, AdamW) of the same GPT-2 / LLaMA shapes, built from
the plain-torch models of tools/gen_model_fixtures.py's kind.

  /usr/bin/python3 tools/bench_model_torch.py [gpt2|llama] [B] [T] [n_layer] [steps]

Threads: all cores (torch may default to 1 here), or TORCH_THREADS.
"""
import math
import os
import sys
import time

import torch


def main():
    arch = sys.argv[1] if len(sys.argv) > 1 else "gpt2"
    B = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    T = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    L = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 5
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", os.cpu_count())))
    V, C, H = 50257, 768, 12
    nn = torch.nn
    F = nn.functional

    class GPT2Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = [t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v)]
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True) if hasattr(F, "scaled_dot_product_attention") \
                else torch.softmax((q @ k.transpose(-1, -2) / math.sqrt(C // H)).masked_fill(
                    torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")), -1) @ v
            x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class LlamaBlock(nn.Module):
        def __init__(self):
            super().__init__()
            D, Hkv, FF = C // H, 4, 2048
            self.Hkv, self.D = Hkv, D
            self.n1, self.n2 = nn.Parameter(torch.ones(C)), nn.Parameter(torch.ones(C))
            self.q, self.k = nn.Linear(C, C, bias=False), nn.Linear(C, Hkv * D, bias=False)
            self.v, self.o = nn.Linear(C, Hkv * D, bias=False), nn.Linear(C, C, bias=False)
            self.gate, self.up = nn.Linear(C, FF, bias=False), nn.Linear(C, FF, bias=False)
            self.down = nn.Linear(FF, C, bias=False)
            inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2).float() / D))
            e = torch.outer(torch.arange(T).float(), inv)
            e = torch.cat((e, e), -1)
            self.cos, self.sin = e.cos(), e.sin()

        def rms(self, x, w):
            return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))

        def rope(self, x):
            h = x.shape[-1] // 2
            return x * self.cos + torch.cat((-x[..., h:], x[..., :h]), -1) * self.sin

        def forward(self, x):
            a = self.rms(x, self.n1)
            q = self.rope(self.q(a).view(B, T, H, self.D).transpose(1, 2))
            k = self.rope(self.k(a).view(B, T, self.Hkv, self.D).transpose(1, 2)).repeat_interleave(H // self.Hkv, 1)
            v = self.v(a).view(B, T, self.Hkv, self.D).transpose(1, 2).repeat_interleave(H // self.Hkv, 1)
            w = (q @ k.transpose(-1, -2) / math.sqrt(self.D)).masked_fill(
                torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
            x = x + self.o((torch.softmax(w, -1) @ v).transpose(1, 2).reshape(B, T, C))
            a = self.rms(x, self.n2)
            return x + self.down(F.silu(self.gate(a)) * self.up(a))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(1024, C) if arch == "gpt2" else None
            for e in (self.wte, self.wpe):
                if e is not None:
                    nn.init.normal_(e.weight, std=0.02)
            self.blocks = nn.ModuleList([GPT2Block() if arch == "gpt2" else LlamaBlock() for _ in range(L)])
            self.ln_f = nn.LayerNorm(C)
            self.head = None if arch == "gpt2" else nn.Linear(C, V, bias=False)

        def forward(self, ids):
            x = self.wte(ids)
            if self.wpe is not None:
                x = x + self.wpe(torch.arange(T))
            for b in self.blocks:
                x = b(x)
            x = self.ln_f(x)
            return x @ self.wte.weight.t() if self.head is None else self.head(x)

    torch.manual_seed(0)
    m = Model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    ids = torch.randint(0, V, (B, T))
    tg = torch.randint(0, V, (B * T,))
    times = []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(m(ids).view(-1, V), tg)
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        if s:
            times.append(t1 - t0)
            print("step %d: loss %.4f, %.1f ms" % (s, loss.item(), 1e3 * (t1 - t0)))
    print("torch %s B=%d T=%d L=%d threads=%d: mean step %.1f ms, best %.1f ms" % (
        arch, B, T, L, torch.get_num_threads(), 1e3 * sum(times) / len(times), 1e3 * min(times)))


if __name__ == "__main__":
    main()
