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
