#!/bin/sh
# The `mtft` command end to end, as a user runs it, on a tiny job over the
# bundled data: help and usage errors (exit 2), config errors naming the
# file and line (exit 2), pretrain + multitask train + test metrics (exit 0),
# info, eval, predict (JSONL in and out), generate, Ctrl-C during training
# (a checkpoint is written, exit 3) and resuming from it.
#
#   sh tests/check_cli.sh MTFT_BINARY SOURCE_DIR
set -u
MTFT=$1
SRC=$2
T=$(mktemp -d "${TMPDIR:-/tmp}/mtft_cli.XXXXXX")
trap 'rm -rf "$T"' EXIT INT TERM
n_ok=0

fail() {
    echo "FAIL: $*"
    for f in "$T/stdout" "$T/stderr"; do
        [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
    done
    exit 1
}
# expect CODE CMD...: run CMD, output in $T/stdout and $T/stderr, require exit CODE
expect() {
    want=$1
    shift
    "$@" >"$T/stdout" 2>"$T/stderr"
    rc=$?
    [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want"
    n_ok=$((n_ok + 1))
}
# has FILE TEXT: FILE contains TEXT
has() {
    grep -q -- "$2" "$1" || fail "$1 lacks '$2'"
}

# ---- usage -------------------------------------------------------------------
expect 0 "$MTFT" --help
has "$T/stdout" "train CONFIG"
has "$T/stdout" "exit codes"
expect 2 "$MTFT" frobnicate
expect 2 "$MTFT" train
expect 2 "$MTFT" train "$T/missing.yaml"
has "$T/stderr" "missing.yaml"

# ---- a tiny job on bundled data -----------------------------------------------
head -c 60000 "$SRC/data/pretrain/en_moby_dick.txt" >"$T/text.txt"
D="$SRC/data/tasks"
cat >"$T/run.yaml" <<EOF
pretrain:
  texts: [text.txt]
  vocab_size: 400
  n_layer: 1
  n_embd: 32
  n_head: 2
  n_ctx: 32
  batch_size: 4
  steps: 6
  seed: 1
  print_every: 3

train:
  base: base
  baselines: $SRC/data/baselines.json
  log: out/metrics.jsonl
  out: out/checkpoint
  seed: 1
  steps: 8
  batch_size: 8
  max_len: 24
  lr: 0.003
  lora_rank: 2
  lora_alpha: 4
  sampler: temperature
  balancer: uncertainty
  eval_every: 4
  eval_max_examples: 20
  test_max_examples: 0
  print_every: 2

data:
  eos_token: "<|endoftext|>"
  max_len: 24

tasks:
  - name: name_gender
    type: classification
    files: {train: $D/name_gender/train.jsonl, dev: $D/name_gender/dev.jsonl, test: $D/name_gender/test.jsonl}
    labels: [female, male]
  - name: afinn_valence
    type: regression
    files: {train: $D/afinn_valence/train.jsonl, dev: $D/afinn_valence/dev.jsonl, test: $D/afinn_valence/test.jsonl}
  - name: kjv_word_alignment
    type: tagging
    files: {train: $D/kjv_word_alignment/train.jsonl, dev: $D/kjv_word_alignment/dev.jsonl,
            test: $D/kjv_word_alignment/test.jsonl}
    labels: [O, W, ADD]
    on_bad_example: skip
EOF
cd "$T" || fail "cd $T"

# config errors: a misspelt key (file and line), and options mtft train would not apply
sed 's/^  steps: 8$/  stepz: 8/' run.yaml >typo.yaml
ln=$(grep -n '^  stepz' typo.yaml | cut -d: -f1)
expect 2 "$MTFT" train typo.yaml
has "$T/stderr" "typo.yaml:$ln:3"
has "$T/stderr" "stepz"
sed 's/^  eos_token: .*/&\n  pack: true/' run.yaml >pack.yaml
grep -q "pack: true" pack.yaml || fail "could not write pack.yaml"
expect 2 "$MTFT" train pack.yaml
has "$T/stderr" "data.pack"

# pretrain (train.base is missing), finetune, test metrics beside the floors
expect 0 "$MTFT" train run.yaml --threads 1
has "$T/stdout" "pretrain: saved the base model"
for task in name_gender afinn_valence kjv_word_alignment; do has "$T/stdout" "$task"; done
has "$T/stdout" "accuracy"
has "$T/stdout" "rmse"
# test_max_examples 0: the whole test split (799 examples), not the dev cap eval_max_examples (20)
n_test=$(wc -l <"$D/name_gender/test.jsonl")
grep -q "^name_gender .* $n_test\$" "$T/stdout" || fail "the test table does not say $n_test examples for name_gender"
grep '"split":"test"' out/metrics.jsonl | grep -q "\"name_gender\":{\"n\":$n_test," ||
    fail "the log's test line does not say name_gender was evaluated on $n_test examples"
grep '"split":"dev"' out/metrics.jsonl | grep -q '"name_gender":{"n":20,' ||
    fail "the log's dev lines do not say name_gender was evaluated on 20 examples (eval_max_examples)"
[ -f base/config.json ] || fail "no pretrained base/config.json"
[ -d out/checkpoint ] || fail "no checkpoint directory out/checkpoint"
[ -s out/metrics.jsonl ] || fail "no JSONL log"
[ -s out/metrics.html ] || fail "no HTML report"
steps=$(grep -c '"event":"step"' out/metrics.jsonl)
[ "$steps" -eq 8 ] || fail "the log has $steps step lines, expected 8"
has out/metrics.jsonl '"split":"dev"'
has out/metrics.jsonl '"split":"test"'
grep '"split":"test"' out/metrics.jsonl | grep -q '"kjv_word_alignment":{"n":[0-9]*,"token_accuracy"' ||
    fail "the test line of the log lacks kjv_word_alignment's token_accuracy"

expect 0 "$MTFT" info out/checkpoint
has "$T/stdout" "name_gender"
expect 0 "$MTFT" info run.yaml
expect 0 "$MTFT" eval run.yaml --checkpoint out/checkpoint --split dev
has "$T/stdout" "name_gender"
expect 2 "$MTFT" eval run.yaml --checkpoint out/checkpoint --split nonsense

# predict: one JSON object per input line
head -n 5 "$D/name_gender/test.jsonl" >in.jsonl
expect 0 "$MTFT" predict run.yaml --checkpoint out/checkpoint --task name_gender --in in.jsonl --out pred.jsonl
[ "$(wc -l <pred.jsonl)" -eq 5 ] || fail "predict wrote $(wc -l <pred.jsonl) lines for 5 inputs"
has pred.jsonl '"label"'
head -n 3 "$D/kjv_word_alignment/test.jsonl" >in_tag.jsonl
expect 0 "$MTFT" predict run.yaml --checkpoint out/checkpoint --task kjv_word_alignment --in in_tag.jsonl --out tags.jsonl
[ "$(wc -l <tags.jsonl)" -eq 3 ] || fail "predict (tagging) wrote $(wc -l <tags.jsonl) lines for 3 inputs"
has tags.jsonl '"tags"'
expect 2 "$MTFT" predict run.yaml --checkpoint out/checkpoint --task no_such_task --in in.jsonl --out x.jsonl

expect 0 "$MTFT" generate --model base --prompt "The whale" --max 5 --seed 3
expect 2 "$MTFT" generate --prompt "The whale"

# Ctrl-C during training: a checkpoint, exit 3; then resume from it
sed -e 's/^  steps: 8$/  steps: 1000000/' -e 's#out/checkpoint#int/checkpoint#' -e 's#out/metrics#int/metrics#' \
    run.yaml >long.yaml
"$MTFT" train long.yaml --threads 1 >"$T/stdout" 2>"$T/stderr" &
pid=$!
i=0
while [ $i -lt 600 ]; do
    [ -f int/metrics.jsonl ] && [ "$(grep -c '"event":"step"' int/metrics.jsonl)" -ge 3 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
done
kill -INT $pid 2>/dev/null || fail "the long run ended before Ctrl-C"
wait $pid
rc=$?
[ "$rc" -eq 3 ] || fail "Ctrl-C: exit $rc, expected 3"
n_ok=$((n_ok + 1))
has "$T/stdout" "stopped at step"
[ -d int/checkpoint ] || fail "Ctrl-C wrote no checkpoint"
stopped=$(sed -n 's/^stopped at step \([0-9]*\).*/\1/p' "$T/stdout")
[ -n "$stopped" ] || fail "no step number in the stop message"
sed -e "s/^  steps: 1000000$/  steps: $((stopped + 2))/" -e 's#int/checkpoint#res/checkpoint#' \
    -e 's#int/metrics#res/metrics#' long.yaml >resume.yaml
expect 0 "$MTFT" train resume.yaml --threads 1 --resume int/checkpoint
has "$T/stdout" "resumed from int/checkpoint at step $stopped"
steps=$(grep -c '"event":"step"' res/metrics.jsonl)
[ "$steps" -eq 2 ] || fail "the resumed run logged $steps steps, expected 2"

echo "mtft CLI: $n_ok checks passed"
