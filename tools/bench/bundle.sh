#!/usr/bin/env bash
# A self-contained copy of sluice for a machine without a Swift toolchain (a bigger box to run
# the pipeline benchmarks on): the release binary with the Swift runtime linked in, plus the
# shared libraries it loads that a bare Linux may lack (ZeroMQ and its dependencies, OpenBLAS
# and its Fortran runtime), behind a wrapper that points the loader at them for sluice alone
# (Python on the same machine keeps its own libstdc++). glibc and the C++ runtime are left
# out: the target needs ones at least as new.
#
#   tools/bench/bundle.sh [OUT_DIR]      (default .bench-bundle)
# then, on the other machine, from a checkout of this repository:
#   python3 tools/bench/cores.py --binary .bench-bundle/sluice
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-.bench-bundle}"
swift build -c release --product sluice --static-swift-stdlib --quiet
rm -rf "$out"
mkdir -p "$out/lib" "$out/bin"
cp .build/release/sluice "$out/bin/sluice"
strip "$out/bin/sluice"
ldd "$out/bin/sluice" | awk '/=> \// { print $3 }' | while read -r library; do
    case "$(basename "$library")" in
        libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|ld-linux*|libstdc++.so.*|libgcc_s.so.*) ;;
        *) cp -L "$library" "$out/lib/" ;;
    esac
done
cat > "$out/sluice" <<'WRAPPER'
#!/bin/sh
# Stage processes are started from /proc/self/exe and inherit this search path.
here="$(dirname "$(readlink -f "$0")")"
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/bin/sluice" "$@"
WRAPPER
chmod +x "$out/sluice"
du -sh "$out"
