#!/usr/bin/env python3
"""PyTorch counterpart of bench/bench_peft.c, and the side-by-side runner.

One training step (forward, LM cross-entropy per task, backward, AdamW) of a
GPT-2 124M-shaped model (random weights, V 50257, C 768, 12 heads) in plain
torch:
  full   every weight trainable
  lora   base frozen, one LoRA r=8 (alpha 16) on c_attn, attn c_proj, c_fc,
         mlp c_proj, as PEFT computes it (lora_B(lora_A(x)) * scaling)
  mixed  base frozen, `tasks` LoRAs; each LoRA layer loops over the tasks
         present in the batch and adds each adapter on its rows, as PEFT's
         mixed-adapter batches must (LoraLayer._mixed_batch_forward:
         sub_batch = x[idx]; result[idx] += lora(sub_batch) * scaling); one
         loss per task on its rows, summed

Single run (one JSON line, like bench_peft):
  python3 bench/bench_peft_torch.py MODE [B] [T] [n_layer] [steps] [tasks]
Side by side (what to run; interleaves mtft and torch processes, `rounds`
times, and prints one merged JSON line per configuration with medians):
  python3 bench/bench_peft_torch.py --compare BUILD/bench_peft [rounds] [steps] [n_layer] [configs]
  (configs: a comma-separated subset of full,lora_r8,one_lora_B8,mixed8_B8; default all)
PEFT_TORCH=0 skips the torch processes (mtft-only ratios, e.g. LoRA vs full).
Threads (torch): TORCH_MODE=blas (default: torch.set_num_threads(1), BLAS
with its own 2 threads) or TORCH_MODE=omp (torch.set_num_threads(2),
OMP_WAIT_POLICY=PASSIVE). OPENBLAS_CORETYPE is set for the torch process to
the CPU's best kernel when the environment does not set it (mtft does the
same itself).
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def torch_run(mode, B, T, L, steps, K):
    import math
    import torch
    nn = torch.nn
    F = nn.functional
    if os.environ.get("TORCH_MODE", "blas") == "omp":
        torch.set_num_threads(2)
    else:
        torch.set_num_threads(1)
    torch.manual_seed(0)
    V, C, H = 50257, 768, 12
    if mode != "mixed":
        K = 1
    task_of_row = [b % K for b in range(B)]
    causal_mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    rows = [[b for b in range(B) if task_of_row[b] == k] for k in range(K)]

    class Lora(nn.Module):
        """A base linear (frozen unless full) with K LoRA adapters."""

        def __init__(self, fin, fout, n_adapters):
            super().__init__()
            self.base = nn.Linear(fin, fout)
            self.A = nn.ParameterList([nn.Parameter(torch.empty(8, fin)) for _ in range(n_adapters)])
            self.B = nn.ParameterList([nn.Parameter(torch.randn(fout, 8) * 0.01) for _ in range(n_adapters)])
            for a in self.A:
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.scaling = 16.0 / 8

        def forward(self, x):
            y = self.base(x)
            if len(self.A) == 0:
                return y
            if len(self.A) == 1:
                return y + F.linear(F.linear(x, self.A[0]), self.B[0]) * self.scaling
            y = y.clone()
            for k, idx in enumerate(rows):  # PEFT's per-adapter loop over sub-batches
                if not idx:
                    continue
                sub = x[idx]
                y[idx] += F.linear(F.linear(sub, self.A[k]), self.B[k]) * self.scaling
            return y

    na = 0 if mode == "full" else K

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = Lora(C, 3 * C, na), Lora(C, C, na)
            self.c_fc, self.mlp_proj = Lora(C, 4 * C, na), Lora(4 * C, C, na)

        def forward(self, x):
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = [t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v)]
            if hasattr(F, "scaled_dot_product_attention"):
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:  # torch < 2.0
                w = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(C // H))
                y = torch.softmax(w.masked_fill(causal_mask, float("-inf")), -1) @ v
            x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(1024, C)
            nn.init.normal_(self.wte.weight, std=0.02)  # GPT-2's init, as mtft's
            nn.init.normal_(self.wpe.weight, std=0.02)
            self.h = nn.ModuleList([Block() for _ in range(L)])
            self.ln_f = nn.LayerNorm(C)

        def forward(self, ids):
            x = self.wte(ids) + self.wpe(torch.arange(T))
            for b in self.h:
                x = b(x)
            return self.ln_f(x) @ self.wte.weight.t()

    model = GPT()
    if mode == "full":
        params = list(model.parameters())
    else:
        params = []
        for name, p in model.named_parameters():
            lora = ".A." in name or ".B." in name
            p.requires_grad_(lora)
            if lora:
                params.append(p)
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(0, V, (B, T))
    tgt = torch.randint(0, V, (B, T))
    times, cpu = [], []
    loss = None
    for s in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        logits = model(ids)
        loss = 0.0
        for idx in rows:
            if idx:
                loss = loss + F.cross_entropy(logits[idx].reshape(-1, V), tgt[idx].reshape(-1))
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        if s > 0:
            times.append(t1 - t0)
            cpu.append(time.process_time() - c0)
    times.sort()
    cpu.sort()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"name": mode, "B": B, "T": T, "n_layer": L, "tasks": K, "torch_s": round(times[len(times) // 2], 4),
                      "torch_min_s": round(times[0], 4), "torch_cpu_s": round(cpu[len(cpu) // 2], 4), "torch_rss_mb": round(rss, 1), "loss": round(float(loss), 4),
                      "torch_mode": os.environ.get("TORCH_MODE", "blas")}))


def best_coretype():
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return None
    if " avx512f " in flags:
        return "SKYLAKEX"
    if " avx2 " in flags:
        return "HASWELL"
    return None


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("%s failed: %s" % (" ".join(cmd), out.stderr.strip()[-400:]))


def compare(bench, rounds, steps, L, only=None):
    env = dict(os.environ)
    ct = best_coretype()
    if ct and "OPENBLAS_CORETYPE" not in env:
        env["OPENBLAS_CORETYPE"] = ct
    tenv = dict(env)
    if tenv.get("TORCH_MODE", "blas") == "omp":
        tenv["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        tenv.setdefault("OPENBLAS_NUM_THREADS", "2")
    # name, mode, B, tasks
    configs = [("full", "full", 4, 1), ("lora_r8", "lora", 4, 1), ("one_lora_B8", "lora", 8, 1),
               ("mixed8_B8", "mixed", 8, 8)]
    if only:
        configs = [c for c in configs if c[0] in only]
    res = {c[0]: {"mtft": [], "torch": []} for c in configs}
    with_torch = os.environ.get("PEFT_TORCH", "1") != "0"
    for _ in range(rounds):
        for name, mode, B, K in configs:  # interleaved: mtft, torch, next config
            args = [mode, str(B), "256", str(L), str(steps), str(K)]
            res[name]["mtft"].append(run_json([bench] + args, env))
            if with_torch:
                res[name]["torch"].append(run_json([sys.executable, os.path.abspath(__file__)] + args, tenv))
    out = {}
    for name, mode, B, K in configs:
        tr = res[name]["torch"]
        m = statistics.median(r["mtft_s"] for r in res[name]["mtft"])
        t = statistics.median(r["torch_s"] for r in tr) if tr else None
        out[name] = {"name": name, "B": B, "T": 256, "n_layer": L, "tasks": K, "mtft_s": round(m, 4),
                     "torch_s": round(t, 4) if tr else None, "ratio": round(m / t, 3) if tr else None,
                     "mtft_cpu_s": statistics.median(r["mtft_cpu_s"] for r in res[name]["mtft"]),
                     "torch_cpu_s": statistics.median(r["torch_cpu_s"] for r in tr) if tr else None,
                     "mtft_rss_mb": max(r["mtft_rss_mb"] for r in res[name]["mtft"]),
                     "torch_rss_mb": max(r["torch_rss_mb"] for r in tr) if tr else None,
                     "mtft_fwd_s": statistics.median(r["mtft_fwd_s"] for r in res[name]["mtft"]),
                     "mtft_bwd_s": statistics.median(r["mtft_bwd_s"] for r in res[name]["mtft"]),
                     "mtft_opt_s": statistics.median(r["mtft_opt_s"] for r in res[name]["mtft"]),
                     "rounds": rounds, "steps": steps, "blas": res[name]["mtft"][0].get("blas"),
                     "torch_mode": tenv.get("TORCH_MODE", "blas")}
        print(json.dumps(out[name]))
    # the targets, as ratios of the mtft figures (those whose configurations ran)
    t = {"name": "targets"}
    if "full" in out and "lora_r8" in out:
        f, lo = out["full"], out["lora_r8"]
        t["lora_vs_full_time"] = round(lo["mtft_s"] / f["mtft_s"], 3)
        t["lora_vs_full_rss"] = round(lo["mtft_rss_mb"] / f["mtft_rss_mb"], 3)
        # per round: each round runs full then lora back to back
        per = [l["mtft_s"] / x["mtft_s"] for x, l in zip(res["full"]["mtft"], res["lora_r8"]["mtft"])]
        t["lora_vs_full_time_per_round"] = [round(v, 3) for v in per]
    if "one_lora_B8" in out and "mixed8_B8" in out:
        t["mixed8_vs_one_lora_time"] = round(out["mixed8_B8"]["mtft_s"] / out["one_lora_B8"]["mtft_s"], 3)
    if "mixed8_B8" in out:
        t["mixed8_mtft_vs_torch_time"] = out["mixed8_B8"]["ratio"]
    t["load"] = [r["mtft"][-1].get("load") for r in res.values()]
    print(json.dumps(t))


def main():
    a = sys.argv[1:]
    if a and a[0] == "--compare":
        bench = a[1]
        rounds = int(a[2]) if len(a) > 2 else 3
        steps = int(a[3]) if len(a) > 3 else 3
        L = int(a[4]) if len(a) > 4 else 12
        only = a[5].split(",") if len(a) > 5 else None
        compare(bench, rounds, steps, L, only)
        return
    mode = a[0] if a else "lora"
    B = int(a[1]) if len(a) > 1 else 4
    T = int(a[2]) if len(a) > 2 else 256
    L = int(a[3]) if len(a) > 3 else 12
    steps = int(a[4]) if len(a) > 4 else 3
    K = int(a[5]) if len(a) > 5 else 8
    torch_run(mode, B, T, L, steps, K)


if __name__ == "__main__":
    main()
