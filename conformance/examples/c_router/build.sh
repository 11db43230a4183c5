#!/bin/sh
# Build the C routing harness: C11, -O2, no fused multiply-add (OVW-2.2), no fast-math.
#   conformance/examples/c_router/build.sh [OUTPUT]      (default: router beside this script)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/router"}
cc=${CC:-cc}
"$cc" -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -ffp-contract=off -fno-fast-math -Wall -Wextra -o "$out" "$here/router.c" -lm
echo "$out"
