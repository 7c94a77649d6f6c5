#!/usr/bin/env python3
"""Side-by-side training-step benchmark: mtft (bench_model) against PyTorch
(bench/model_torch.py), interleaved step by step in one run.

  /usr/bin/python3 bench/compare_model.py [--build DIR] [--shapes 124m,small]
      [--steps N] [--warmup N] [--torch-modes t1,omp2,omp2-ompblas]
      [--mtft-modes passive,spin] [--threads 2] [--coretype NAME] [--gap SECONDS]

For each shape it starts long-lived worker processes, each idle (blocked on
stdin) while another runs:
  - mtft:   DIR/bench_model --serve SHAPE          (a training step per "step"),
            one process per mtft mode:
      passive       OMP_WAIT_POLICY=PASSIVE (the default here: on a shared,
                    loaded machine a spinning OpenMP barrier waits for a
                    descheduled thread; measured 3x slower steps at load 5)
      spin          libgomp's default wait policy
  - gemm:   DIR/bench_model --serve-gemm            (one pass over bench_core's
            sgemm shapes of a 768-wide transformer per "gemm")
  - torch:  model_torch.py --serve SHAPE, one process per torch mode:
      t1            torch.set_num_threads(1), OpenBLAS (pthread build) 2 threads
      omp2          torch 2 OpenMP threads with OMP_WAIT_POLICY=PASSIVE,
                    OpenBLAS (pthread build) 2 threads
      omp2-ompblas  as omp2 but on Debian's OpenMP build of OpenBLAS
                    (LD_LIBRARY_PATH), so torch's ops and BLAS share one pool
Every process gets the same OPENBLAS_CORETYPE (--coretype, else the value in
the environment, else none: all then autodetect); the run stops unless all
report the same OpenBLAS kernel.

A round runs --gemm-reps gemm passes directly followed by one step of each
mtft mode, and one step of each torch mode, these units in an order rotated
every round, with --gap seconds of sleep before each (so spinning thread
pools of the previous process have gone idle). After
--warmup rounds, --steps rounds are measured. Per shape it prints one JSON
object:
  mtft_s, torch_s   median step time of the fastest mtft mode and of the
                    fastest torch mode
  ratio             mtft_s / torch_s; ratio_paired: median over rounds of
                    best-mode mtft step / best-mode torch step of the same round
  mfu               model FLOP/s of mtft / sgemm FLOP/s (medians over rounds;
                    a round's sgemm figure is the median of its gemm passes);
                    mfu_paired: median over rounds of the same ratio within
                    the round (measured seconds apart: the VM's speed swings)
                    model FLOPs per step = 6 * N * B*T + 12 * L * T^2 * C * B,
                    N = matmul parameters = 12 L C^2 + V C (the tied LM head;
                    position embeddings and norms/biases excluded)
  torch_mfu         the same for torch
  mtft_cpu_s, torch_cpu_s, cpu_ratio   median process CPU time per step (all
                    threads; steadier than wall time on a shared machine, but
                    it counts spinning waits as work)
  mtft_rss_mb, torch_rss_mb   peak RSS (getrusage ru_maxrss) of each process
  load              1-minute load average before and after the comparison
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHAPES = {  # name: (L, C, H, V, B, T)
    "124m": (12, 768, 12, 50257, 4, 256),
    "small": (4, 256, 4, 4096, 8, 128),
}
OMP_BLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"


def model_flops(L, C, V, B, T):
    n = 12 * L * C * C + V * C
    return 6.0 * n * B * T + 12.0 * L * T * T * C * B


class Worker:
    def __init__(self, name, argv, env):
        self.name = name
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, bufsize=1)
        self.info = self._read()
        if "ready" not in self.info:
            raise RuntimeError("%s did not start: %r" % (name, self.info))

    def _read(self):
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("%s exited (rc %s)" % (self.name, self.p.poll()))
        return json.loads(line)

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        r = self._read()
        if "error" in r:
            raise RuntimeError("%s: %s" % (self.name, r["error"]))
        return r

    def quit(self):
        r = self.ask("quit")
        self.p.wait(timeout=60)
        return r


def base_env(args):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["OPENBLAS_NUM_THREADS"] = str(args.threads)
    if args.coretype:
        env["OPENBLAS_CORETYPE"] = args.coretype
    env["MTFT_NO_REEXEC"] = "1"  # every process keeps the kernel chosen here
    return env


def mtft_env(args, mode):
    env = base_env(args)
    env.pop("OMP_WAIT_POLICY", None)
    if mode == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif mode != "spin":
        sys.exit("compare_model.py: unknown mtft mode %r" % mode)
    return env


def torch_env(args, mode):
    env = base_env(args)
    env.pop("OMP_WAIT_POLICY", None)
    if mode == "t1":
        threads = 1
    elif mode in ("omp2", "omp2-ompblas"):
        threads = args.threads
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        if mode == "omp2-ompblas":
            env["LD_LIBRARY_PATH"] = OMP_BLAS_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    else:
        sys.exit("compare_model.py: unknown torch mode %r" % mode)
    return env, threads


def compare(args, shape):
    L, C, H, V, B, T = SHAPES[shape]
    bench = os.path.join(args.build, "bench_model")
    py = sys.executable
    load0 = os.getloadavg()[0]
    workers = {"gemm": Worker("gemm", [bench, "--serve-gemm", "--threads", str(args.threads)],
                              mtft_env(args, args.mtft_modes[0]))}
    for mode in args.mtft_modes:
        workers["mtft:" + mode] = Worker("mtft:" + mode, [bench, "--serve", shape, "--threads", str(args.threads)],
                                         mtft_env(args, mode))
    for mode in args.torch_modes:
        tenv, th = torch_env(args, mode)
        workers["torch:" + mode] = Worker("torch:" + mode, [py, os.path.join(HERE, "model_torch.py"), "--serve",
                                                           shape, "--threads", str(th)], tenv)
    kernels = {n: w.info.get("kernel") for n, w in workers.items()}
    if len(set(kernels.values())) != 1:
        for w in workers.values():
            w.p.kill()
        sys.exit("compare_model.py: processes run on different OpenBLAS kernels: %r (set --coretype)" % kernels)
    for n, w in workers.items():
        print("# %s: %s" % (n, json.dumps(w.info)), file=sys.stderr)
    names = list(workers)
    times = {n: [] for n in names}
    cpus = {n: [] for n in names}
    mtft_parts = {}
    # units of a round: the gemm pass runs right before the mtft steps (so a
    # round's MFU compares measurements seconds apart), then each torch mode
    units = [["gemm"] + [n for n in names if n.startswith("mtft:")]] + [[n] for n in names if n.startswith("torch:")]
    for r in range(args.warmup + args.steps):
        k = r % len(units)
        for n in [n for u in units[k:] + units[:k] for n in u]:
            time.sleep(args.gap)
            if n == "gemm":
                res = [workers[n].ask("gemm") for _ in range(args.gemm_reps)]
                res = {"gflops": statistics.median(x["gflops"] for x in res)}
            else:
                res = workers[n].ask("step")
            if r >= args.warmup:
                times[n].append(res["gflops"] if n == "gemm" else res["step_s"])
                if "cpu_s" in res:
                    cpus[n].append(res["cpu_s"])
                if n.startswith("mtft:"):
                    mtft_parts.setdefault(n, []).append((res["fwd_s"], res["bwd_s"], res["opt_s"]))
        print("# %s round %d: %s" % (shape, r, " ".join("%s=%.3f" % (n, times[n][-1]) for n in names if times[n])
                                     if r >= args.warmup else "warm-up"), file=sys.stderr)
    rss = {n: w.quit()["rss_mb"] for n, w in workers.items()}
    load1 = os.getloadavg()[0]
    med = {n: statistics.median(v) for n, v in times.items()}
    tmodes = [n for n in names if n.startswith("torch:")]
    mmodes = [n for n in names if n.startswith("mtft:")]
    best = min(tmodes, key=lambda n: med[n])
    mbest = min(mmodes, key=lambda n: med[n])
    flops = model_flops(L, C, V, B, T)
    gf = med["gemm"]
    paired = statistics.median(m / t for m, t in zip(times[mbest], times[best]))
    mfu_paired = statistics.median(flops / m / (g * 1e9) for m, g in zip(times[mbest], times["gemm"]))
    out = {
        "name": "train_step gpt2-%s" % shape,
        "mtft_s": round(med[mbest], 4),
        "torch_s": round(med[best], 4),
        "ratio": round(med[mbest] / med[best], 3),
        "ratio_paired": round(paired, 3),
        "mfu": round(flops / med[mbest] / (gf * 1e9), 3),
        "mfu_paired": round(mfu_paired, 3),
        "torch_mfu": round(flops / med[best] / (gf * 1e9), 3),
        "mtft_cpu_s": round(statistics.median(cpus[mbest]), 4) if cpus[mbest] else None,
        "torch_cpu_s": round(statistics.median(cpus[best]), 4) if cpus[best] else None,
        "cpu_ratio": round(statistics.median(cpus[mbest]) / statistics.median(cpus[best]), 3)
        if cpus[mbest] and cpus[best] else None,
        "mtft_rss_mb": rss[mbest],
        "torch_rss_mb": rss[best],
        "mtft_mode": mbest[len("mtft:"):],
        "mtft_modes_s": {n[len("mtft:"):]: round(med[n], 4) for n in mmodes},
        "torch_mode": best[len("torch:"):],
        "torch_modes_s": {n[len("torch:"):]: round(med[n], 4) for n in tmodes},
        "sgemm_gflops": round(gf, 1),
        "model_gflop": round(flops * 1e-9, 1),
        "mtft_fwd_bwd_opt_s": [round(statistics.median(p[i] for p in mtft_parts[mbest]), 4) for i in range(3)],
        "shape": {"L": L, "C": C, "H": H, "V": V, "B": B, "T": T},
        "steps": args.steps, "threads": args.threads, "kernel": kernels["gemm"],
        "load": [round(load0, 2), round(load1, 2)],
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(out), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--shapes", default="124m,small")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--torch-modes", default="t1,omp2,omp2-ompblas")
    ap.add_argument("--mtft-modes", default="passive")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--coretype", default=os.environ.get("OPENBLAS_CORETYPE"))
    ap.add_argument("--gap", type=float, default=0.2)
    ap.add_argument("--gemm-reps", type=int, default=3)
    args = ap.parse_args()
    args.torch_modes = [m for m in args.torch_modes.split(",") if m]
    args.mtft_modes = [m for m in args.mtft_modes.split(",") if m]
    if args.steps < 1 or not args.torch_modes or not args.mtft_modes:
        sys.exit("compare_model.py: need --steps >= 1, at least one torch mode and one mtft mode")
    for s in args.shapes.split(","):
        if s not in SHAPES:
            sys.exit("compare_model.py: unknown shape %r" % s)
        compare(args, s)


if __name__ == "__main__":
    main()
