#!/usr/bin/env python3
"""Cross-check the gpt-3-encoder reference ids (tests/fixtures/tokenizer/*.ids)
against OpenAI's original GPT-2 encoder algorithm (gpt-2/src/encoder.py,
re-implemented here: Python `regex` pre-tokenisation, byte-to-unicode, BPE by
rank). Prints every text where the two disagree, with the first differing
word. Needs the `regex` module.

Also writes pretok_cases.text and pretok_cases.words: a seeded random text
of tricky code points (every general category, all White_Space characters,
contractions) and the UTF-8 byte length of each word the Python `regex`
pattern splits it into, one per line. Only code points on which `regex` and
unicodedata (which made src/tokenizer/unicode_tables.c) agree are used.

Usage: python3 tools/gen_tokenizer_fixtures.py <encoder.json> <vocab.bpe> <fixture dir>
"""
import json
import os
import sys

import regex

PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Encoder:
    def __init__(self, encoder, merges):
        self.encoder = encoder
        self.ranks = dict(zip(merges, range(len(merges))))
        self.byte_encoder = bytes_to_unicode()
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            bigram = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if bigram not in self.ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
        self.cache[token] = word
        return word

    def encode_words(self, text):
        out = []
        for tok in regex.findall(PAT, text):
            mapped = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            out.append((tok, [self.encoder[t] for t in self.bpe(mapped)]))
        return out


def pretok_cases(d):
    import random
    import unicodedata

    rng = random.Random(20260326)

    def agrees(cp):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat in ("Cn", "Cs", "Co"):
            return False
        return (bool(regex.match(r"\p{L}", ch)) == cat.startswith("L")
                and bool(regex.match(r"\p{N}", ch)) == cat.startswith("N"))

    by_cat = {}
    for cp in range(0x110000):
        if agrees(cp):
            by_cat.setdefault(unicodedata.category(chr(cp))[0], []).append(cp)
    spaces = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2005, 0x200A, 0x2028,
              0x2029, 0x202F, 0x205F, 0x3000]
    near = [0x1C, 0x1D, 0x1E, 0x1F, 0x200B, 0xFEFF, 0x180E]  # not White_Space for regex
    pieces = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'x", "''", " '", "n't", "'", " ", "  ", "\n",
              "don't", "I'll", "1,000", "3.14", "a-b", "!!", " ?"]
    out = []
    for _ in range(6000):
        r = rng.random()
        if r < 0.25:
            out.append(chr(rng.choice(spaces)) * rng.randint(1, 3))
        elif r < 0.30:
            out.append(chr(rng.choice(near)))
        elif r < 0.45:
            out.append(rng.choice(pieces))
        elif r < 0.60:
            out.append("".join(rng.choice("abcXYZ019 .,'") for _ in range(rng.randint(1, 6))))
        else:
            cat = rng.choice(sorted(by_cat))
            out.append("".join(chr(rng.choice(by_cat[cat])) for _ in range(rng.randint(1, 3))))
    text = "".join(out)
    words = regex.findall(PAT, text)
    assert "".join(words) == text
    with open(os.path.join(d, "pretok_cases.text"), "wb") as f:
        f.write(text.encode("utf-8"))
    with open(os.path.join(d, "pretok_cases.words"), "w") as f:
        for w in words:
            f.write("%d\n" % len(w.encode("utf-8")))
    print("pretok_cases.text: %d bytes, %d words" % (len(text.encode("utf-8")), len(words)))


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    pretok_cases(sys.argv[3])
    encoder = json.load(open(sys.argv[1], encoding="utf-8"))
    lines = open(sys.argv[2], encoding="utf-8").read().split("\n")
    merges = [tuple(l.split()) for l in lines[1:-1]]
    enc = Encoder(encoder, merges)
    d = sys.argv[3]
    bad = 0
    for name in sorted(f for f in os.listdir(d) if f.endswith(".txt")):
        text = open(os.path.join(d, name), encoding="utf-8", newline="").read()
        words = enc.encode_words(text)
        ids = [i for _, w in words for i in w]
        ref_path = os.path.join(d, name[:-4] + ".ids")
        ref = [int(x) for x in open(ref_path).read().split()]
        if ids == ref:
            print("%s: python regex == gpt-3-encoder (%d ids)" % (name, len(ids)))
            continue
        bad += 1
        k = next((i for i in range(min(len(ids), len(ref))) if ids[i] != ref[i]), min(len(ids), len(ref)))
        pos = 0
        for tok, w in words:
            if pos + len(w) > k:
                print("%s: DIFFERS at id %d, in word %r: python %r, js %r" % (name, k, tok, w, ref[pos:pos + len(w)]))
                break
            pos += len(w)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
