#!/bin/sh
# Reproduce the tables of docs/results.md: the quickstart config trained
# jointly with equal weights and with uncertainty weighting, with SAM and
# with per-task SAM (uncertainty weighting), and each task alone on the
# examples it gets in the joint run. Prints the markdown tables (test split,
# Δm against the single-task runs) at the end.
#
#   sh scripts/results.sh            # after `sh scripts/quickstart.sh` (reuses out/quickstart/base)
#   JOBS=1 THREADS=2 sh scripts/results.sh   # one run at a time on 2 threads (default: 2 side by side, 1 thread each)
#   SCALE=10 sh scripts/results.sh   # a smoke test: every step count divided by 10
#
# Runs are deterministic and resumable: a run whose log already holds its
# test evaluation is not repeated (delete out/results to start over). About
# 35 minutes of CPU time on this repository's reference machine.
set -eu
cd "$(dirname "$0")/.."
MTFT=${MTFT:-build/mtft}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
SCALE=${SCALE:-1}
O=out/results
CFG=examples/configs/quickstart.yaml
[ -x "$MTFT" ] || { echo "results.sh: $MTFT is missing: run sh scripts/quickstart.sh first" >&2; exit 2; }
[ -f out/quickstart/base/config.json ] || {
    echo "results.sh: out/quickstart/base is missing: run sh scripts/quickstart.sh first" >&2
    exit 2
}
mkdir -p "$O"
STEPS=$((600 / SCALE))

# Config variants live next to the runs (out/results is two levels deep, like
# examples/configs, so the relative paths of the quickstart config still hold).
cp "$CFG" "$O/joint.yaml"
{ cat "$CFG"; printf '\noptimizer:\n  sam_rho: 0.05\n'; } >"$O/sam.yaml"
{ cat "$CFG"; printf '\noptimizer:\n  sam_rho: 0.05\n  sam_per_task: true\n'; } >"$O/task_sam.yaml"

# run NAME CONFIG ARGS...: one `mtft train`, output in $O/NAME.txt, log in $O/NAME.jsonl
run() {
    name=$1
    cfg=$2
    shift 2
    if [ -s "$O/$name.jsonl" ] && grep -q '"split":"test"' "$O/$name.jsonl"; then
        echo "results.sh: $name done already"
        return 0
    fi
    rm -f "$O/$name.jsonl"
    echo "results.sh: $name ($(date -u +%H:%M:%S))"
    "$MTFT" train "$cfg" --seconds 0 --threads "$THREADS" --out "$O/$name" --log "$O/$name.jsonl" "$@" >"$O/$name.txt" 2>&1 ||
        { echo "results.sh: $name failed, see $O/$name.txt" >&2; return 1; }
}

# The runs, JOBS at a time.
set -- \
    "equal $O/joint.yaml --balancer equal --steps $STEPS" \
    "uncertainty $O/joint.yaml --balancer uncertainty --steps $STEPS" \
    "sam $O/sam.yaml --balancer uncertainty --steps $STEPS" \
    "task_sam $O/task_sam.yaml --balancer uncertainty --steps $STEPS"
# single-task runs: as many steps as the task gets rows in the joint run
# (its temperature-sampling rate x 600 steps of 32 rows)
for spec in name_gender:96 fortunes_langid:132 spam_assassin:84 wordnet_supersense:132 \
    afinn_valence:54 kjv_word_alignment:96; do
    t=${spec%%:*}
    n=$((${spec##*:} / SCALE))
    [ "$n" -ge 1 ] || n=1
    set -- "$@" "single_$t $O/joint.yaml --only $t --steps $n"
done
pids=""
fails=0
for r in "$@"; do
    # shellcheck disable=SC2086
    run $r &
    pids="$pids $!"
    if [ "$(echo $pids | wc -w)" -ge "$JOBS" ]; then
        for p in $pids; do wait "$p" || fails=$((fails + 1)); done
        pids=""
    fi
done
for p in $pids; do wait "$p" || fails=$((fails + 1)); done
[ "$fails" -eq 0 ] || { echo "results.sh: $fails run(s) failed" >&2; exit 1; }

# The tables: test metrics of each run's last test evaluation, Δm against
# the single-task runs (Maninis et al.: mean over tasks of the signed
# relative change of the primary metric; RMSE counts lower as better).
python3 - "$O" <<'EOF'
import json, sys
O = sys.argv[1]
tasks = [("name_gender", "accuracy", 1), ("fortunes_langid", "accuracy", 1), ("spam_assassin", "accuracy", 1),
         ("wordnet_supersense", "accuracy", 1), ("afinn_valence", "rmse", -1),
         ("kjv_word_alignment", "token_accuracy", 1)]
def test_metrics(name):
    last = None
    for line in open(f"{O}/{name}.jsonl"):
        j = json.loads(line)
        if j.get("event") == "eval" and j.get("split") == "test":
            last = j
    if last is None:
        sys.exit(f"results.sh: {name}.jsonl has no test evaluation")
    return last["tasks"]
def steps_and_cpu(name):
    n = 0
    for line in open(f"{O}/{name}.jsonl"):
        j = json.loads(line)
        if j.get("event") == "step":
            n = j["step"]
    return n
single = {t: test_metrics(f"single_{t}")[t][m] for t, m, _ in tasks}
runs = [("equal", "joint, equal"), ("uncertainty", "joint, uncertainty"), ("sam", "joint, uncertainty + SAM"),
        ("task_sam", "joint, uncertainty + per-task SAM")]
res = {r: test_metrics(r) for r, _ in runs}
print("| task | metric | single-task | " + " | ".join(h for _, h in runs) + " |")
print("| --- | --- | --- | " + " | ".join("---" for _ in runs) + " |")
dm = {r: 0.0 for r, _ in runs}
for t, m, sgn in tasks:
    cells = []
    for r, _ in runs:
        v = res[r][t][m]
        rel = sgn * (v - single[t]) / single[t] * 100.0
        dm[r] += rel / len(tasks)
        cells.append(f"{v:.4f} ({rel:+.2f}%)")
    print(f"| {t} | {m} | {single[t]:.4f} | " + " | ".join(cells) + " |")
print("| **Δm** | | | " + " | ".join(f"**{dm[r]:+.2f}%**" for r, _ in runs) + " |")
acc = [t for t, m, _ in tasks if m == "accuracy"]
mean = lambda d: sum(d[t] for t in acc) / len(acc)
print("| mean classification accuracy | | " + f"{mean(single):.4f} | " +
      " | ".join(f"{mean({t: res[r][t]['accuracy'] for t in acc}):.4f}" for r, _ in runs) + " |")
print()
print("steps: " + ", ".join(f"{r} {steps_and_cpu(r)}" for r, _ in runs))
EOF
