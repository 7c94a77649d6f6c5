#!/bin/sh
# The shared library must export mtft_* symbols only (plus linker markers).
lib="$1"
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v -E '^(mtft_|_init$|_fini$|_edata$|_end$|__bss_start$)' || true)
n=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -c '^mtft_')
if [ -n "$bad" ]; then
  echo "exported symbols without the mtft_ prefix:"; echo "$bad"; exit 1
fi
if [ "$n" -lt 10 ]; then echo "only $n mtft_ symbols exported"; exit 1; fi
bad2=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -E '^mtft_[a-z0-9]+__' || true)
if [ -n "$bad2" ]; then echo "internal (double underscore) symbols exported:"; echo "$bad2"; exit 1; fi
echo "exports: $n mtft_ symbols, nothing else"
# Every function the public headers declare with MTFT_API is exported (a
# definition that does not see its MTFT_API declaration stays hidden).
hdr_dir="$(dirname "$0")/../include/mtft"
tmp=$(mktemp -d)
cat "$hdr_dir"/*.h | tr '\n' ' ' | grep -oE 'MTFT_API[^;{]*\(' | grep -oE 'mtft_[a-z0-9_]+ *\($' | tr -d ' (' | LC_ALL=C sort -u > "$tmp/declared"
nm -D --defined-only "$lib" | awk '{print $3}' | LC_ALL=C sort -u > "$tmp/exported"
missing=$(LC_ALL=C comm -23 "$tmp/declared" "$tmp/exported")
n_decl=$(wc -l < "$tmp/declared")
rm -rf "$tmp"
if [ -n "$missing" ]; then echo "declared MTFT_API but not exported:"; echo "$missing"; exit 1; fi
if [ "$n_decl" -lt 100 ]; then echo "found only $n_decl MTFT_API declarations: the header scan is broken"; exit 1; fi
echo "exports: all $n_decl MTFT_API functions of the public headers are exported"
