#!/usr/bin/env bash
# Build the ns-3 reference scenario against Debian's libns3-dev (ns-3.37).
# The ns3 pkg-config files name unversioned GSL libraries (libgsl.so, libgslcblas.so) that the package does
# not install, so the libraries are named explicitly and GSL is linked by its soname.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/build/wifi_offload_validation}"
mkdir -p "$(dirname "$out")"
ver="${NS3_VERSION:-3.37}"
libdir="$(dirname "$(find /usr/lib /usr/local/lib -name "libns3-core.so*" -print -quit 2>/dev/null || true)")"
if [ ! -e "$libdir/libns3-core.so" ] || [ ! -d /usr/include/ns3 ]; then
    echo "libns3-dev not found: apt-get install -y libns3-dev (ns-3.$ver)" >&2
    exit 1
fi
gsl="$(ls "$libdir"/libgsl.so.* 2>/dev/null | grep -E 'libgsl\.so\.[0-9]+$' | head -1 || true)"
gslcblas="$(ls "$libdir"/libgslcblas.so.* 2>/dev/null | grep -E 'libgslcblas\.so\.[0-9]+$' | head -1 || true)"
extra=()
[ -n "$gsl" ] && extra+=("-l:$(basename "$gsl")")
[ -n "$gslcblas" ] && extra+=("-l:$(basename "$gslcblas")")
set -x
g++ -O2 -std=c++17 -I/usr/include -o "$out" "$here/wifi_offload_validation.cc" \
    -L"$libdir" -lns3-wifi -lns3-mobility -lns3-propagation -lns3-spectrum -lns3-energy -lns3-antenna \
    -lns3-network -lns3-stats -lns3-core "${extra[@]}" -lsqlite3 -lpthread
