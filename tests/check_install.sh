#!/bin/sh
# Install into a temporary prefix, then build a small program against the
# installed library with find_package(mtft) and with pkg-config, shared and
# static, and run each.
set -eu
src="$1"; bin="$2"; cc="$3"
pfx="$bin/install-test/prefix"
rm -rf "$bin/install-test"; mkdir -p "$bin/install-test"
cmake --install "$bin" --prefix "$pfx" >/dev/null
prog="$src/tests/install/consumer.c"
# pkg-config, shared
export PKG_CONFIG_PATH="$pfx/lib/pkgconfig:$pfx/lib64/pkgconfig:${PKG_CONFIG_PATH:-}"
"$cc" -std=c11 -Wall -Werror $(pkg-config --cflags mtft) "$prog" -o "$bin/install-test/pc_shared" $(pkg-config --libs mtft)
"$bin/install-test/pc_shared"
# pkg-config, static
"$cc" -std=c11 -Wall -Werror -DMTFT_STATIC $(pkg-config --cflags mtft) "$prog" -o "$bin/install-test/pc_static" \
  -Wl,-Bstatic $(pkg-config --libs-only-L mtft) -lmtft -Wl,-Bdynamic $(pkg-config --libs-only-other --static mtft) \
  $(pkg-config --libs-only-L --static mtft) -lopenblas -lyaml -lcjson -lm
"$bin/install-test/pc_static"
if nm "$bin/install-test/pc_static" | grep -q ' T mtft_version$'; then echo "static: mtft linked in"; else echo "static link did not embed mtft"; exit 1; fi
# find_package, shared and static
mkdir -p "$bin/install-test/cm"
cat > "$bin/install-test/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(mtft 0.1 REQUIRED)
add_executable(consumer_shared "$prog")
target_link_libraries(consumer_shared PRIVATE mtft::mtft)
add_executable(consumer_static "$prog")
target_link_libraries(consumer_static PRIVATE mtft::mtft_static)
CM
cmake -S "$bin/install-test/cm" -B "$bin/install-test/cm/build" -DCMAKE_PREFIX_PATH="$pfx" -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build "$bin/install-test/cm/build" >/dev/null
"$bin/install-test/cm/build/consumer_shared"
"$bin/install-test/cm/build/consumer_static"
echo "install: find_package and pkg-config consumers ran, shared and static"
