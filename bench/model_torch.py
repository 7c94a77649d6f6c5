#!/usr/bin/env python3
"""PyTorch counterpart of bench/bench_model.c: one training step (zero_grad,
forward, cross-entropy over the vocabulary, backward, AdamW) of the same
GPT-2 / LLaMA shapes, random weights.

Standalone:
  /usr/bin/python3 bench/model_torch.py --shape 124m|small [--steps N]
  /usr/bin/python3 bench/model_torch.py [gpt2|llama] [B] [T] [n_layer] [steps]   (C 768, H 12, V 50257)
Worker for bench/compare_model.py (the same line protocol as bench_model --serve):
  /usr/bin/python3 bench/model_torch.py --serve SHAPE
    stdin "step" -> {"step_s":..,"cpu_s":..,"loss":..};  "quit" -> {"rss_mb":..} (peak RSS of this process)
    (cpu_s: process CPU time of the step, all threads)

Threads: --threads N calls torch.set_num_threads(N) (default: TORCH_THREADS,
else all cores). OpenBLAS threads come from the environment
(OPENBLAS_NUM_THREADS); the first line printed names the OpenBLAS kernel
(openblas_get_corename) that torch's BLAS calls run on.

Shapes: 124m = GPT-2 124M (L 12, C 768, H 12, V 50257) at B 4, T 256;
        small = L 4, C 256, H 4, V 4096 at B 8, T 128.
torch 1.13 has no F.scaled_dot_product_attention; attention is then the
usual masked softmax(q k^T / sqrt(D)) v, as in HF's GPT-2.
"""
import ctypes
import json
import math
import os
import resource
import sys
import time

import torch

SHAPES = {
    # name: (L, C, H, V, B, T)
    "124m": (12, 768, 12, 50257, 4, 256),
    "small": (4, 256, 4, 4096, 8, 128),
}


def blas_info():
    """OpenBLAS kernel, thread count and threading model of the loaded library."""
    path = None
    with open("/proc/self/maps") as f:
        for line in f:
            if "openblas" in line and ".so" in line:
                path = line.split()[-1]
                break
    if not path:
        return {"blas_lib": None}
    lib = ctypes.CDLL(path)
    lib.openblas_get_corename.restype = ctypes.c_char_p
    par = {0: "serial", 1: "pthread", 2: "openmp"}.get(lib.openblas_get_parallel(), "?")
    return {"blas_lib": path, "kernel": lib.openblas_get_corename().decode(),
            "blas_threading": par, "blas_threads": lib.openblas_get_num_threads()}


def build(arch, L, C, H, V, B, T):
    nn = torch.nn
    F = nn.functional
    D = C // H
    has_sdpa = hasattr(F, "scaled_dot_product_attention")

    def attend(q, k, v, mask):
        if has_sdpa:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        w = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
        return torch.softmax(w.masked_fill(mask, float("-inf")), -1) @ v

    class GPT2Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x, mask):
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = [t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v)]
            x = x + self.c_proj(attend(q, k, v, mask).transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class LlamaBlock(nn.Module):
        def __init__(self):
            super().__init__()
            Hkv, FF = 4, 2048
            self.Hkv = Hkv
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

        def forward(self, x, mask):
            a = self.rms(x, self.n1)
            q = self.rope(self.q(a).view(B, T, H, D).transpose(1, 2))
            k = self.rope(self.k(a).view(B, T, self.Hkv, D).transpose(1, 2)).repeat_interleave(H // self.Hkv, 1)
            v = self.v(a).view(B, T, self.Hkv, D).transpose(1, 2).repeat_interleave(H // self.Hkv, 1)
            x = x + self.o(attend(q, k, v, mask).transpose(1, 2).reshape(B, T, C))
            a = self.rms(x, self.n2)
            return x + self.down(F.silu(self.gate(a)) * self.up(a))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(max(T, 1024), C) if arch == "gpt2" else None
            for e in (self.wte, self.wpe):
                if e is not None:
                    nn.init.normal_(e.weight, std=0.02)
            self.blocks = nn.ModuleList([GPT2Block() if arch == "gpt2" else LlamaBlock() for _ in range(L)])
            self.ln_f = nn.LayerNorm(C)
            self.head = None if arch == "gpt2" else nn.Linear(C, V, bias=False)
            self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))
            self.register_buffer("pos", torch.arange(T))

        def forward(self, ids):
            x = self.wte(ids)
            if self.wpe is not None:
                x = x + self.wpe(self.pos)
            for b in self.blocks:
                x = b(x, self.mask)
            x = self.ln_f(x)
            return x @ self.wte.weight.t() if self.head is None else self.head(x)

    torch.manual_seed(0)
    m = Model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)
    ids = torch.randint(0, V, (B, T))
    tg = torch.randint(0, V, (B * T,))

    def step():
        c0, t0 = time.process_time(), time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(m(ids).view(-1, V), tg)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0, loss.item(), time.process_time() - c0

    n_params = sum(p.numel() for p in m.parameters())
    return step, n_params


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main():
    args = sys.argv[1:]
    opts = {"--serve": None, "--shape": None, "--steps": "5", "--threads": os.environ.get("TORCH_THREADS")}
    pos = []
    i = 0
    while i < len(args):
        if args[i] in opts and i + 1 < len(args):
            opts[args[i]] = args[i + 1]
            i += 2
        else:
            pos.append(args[i])
            i += 1
    torch.set_num_threads(int(opts["--threads"] or os.cpu_count()))
    shape = opts["--serve"] or opts["--shape"]
    if shape:
        if shape not in SHAPES:
            sys.exit("model_torch.py: unknown shape %r (124m or small)" % shape)
        arch = "gpt2"
        L, C, H, V, B, T = SHAPES[shape]
        steps = int(opts["--steps"])
    else:
        arch = pos[0] if pos else "gpt2"
        B = int(pos[1]) if len(pos) > 1 else 4
        T = int(pos[2]) if len(pos) > 2 else 128
        L = int(pos[3]) if len(pos) > 3 else 4
        steps = int(pos[4]) if len(pos) > 4 else int(opts["--steps"])
        C, H, V = 768, 12, 50257
    step, n_params = build(arch, L, C, H, V, B, T)
    info = dict(blas_info(), torch=torch.__version__, threads=torch.get_num_threads(), n_params=n_params,
                shape=shape or arch, B=B, T=T, L=L, C=C, H=H, V=V)

    if opts["--serve"]:
        print(json.dumps(dict(info, ready="torch")), flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "step":
                s, loss, cpu = step()
                print(json.dumps({"step_s": round(s, 6), "cpu_s": round(cpu, 6), "loss": round(loss, 5)}), flush=True)
            elif cmd == "quit":
                print(json.dumps({"rss_mb": round(peak_rss_mb(), 1)}), flush=True)
                return
            else:
                print(json.dumps({"error": "unknown command"}), flush=True)
        return

    times = []
    for s in range(steps + 1):
        dt, loss, _ = step()
        if s:
            times.append(dt)
            print("step %d: loss %.4f, %.1f ms" % (s, loss, 1e3 * dt))
    times.sort()
    med = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
    print("torch %s %s B=%d T=%d L=%d threads=%d blas=%s: median step %.1f ms, best %.1f ms, peak RSS %.0f MB" % (
        torch.__version__, shape or arch, B, T, L, torch.get_num_threads(), info.get("kernel"), 1e3 * med,
        1e3 * times[0], peak_rss_mb()))


if __name__ == "__main__":
    main()
