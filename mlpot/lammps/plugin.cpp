// The LAMMPS plugin entry point of pair_style mlpot (loaded with `plugin load <library>`).
// LAMMPS's plugin interface (plugin_abi.h). This file needs no LAMMPS or torch header: it compiles in a second,
// which the test of the version check uses.
void *mlpot_create_pair(void *lmp);    // pair_mlpot.cpp

#include "plugin_abi.h"

#ifdef MLPOT_VERSION_CHECK_ONLY
void *mlpot_create_pair(void *) { return nullptr; }
#endif

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  // the C library call is safe whatever the LAMMPS version; a plugin of another version stops here, in one line
  if (lammps_version(lmp) != MLPOT_LAMMPS_NUMVER) {
    lammps_error(lmp, 2 /* LMP_ERROR_ALL */,
                 "plugin mlpot: built for LAMMPS " MLPOT_LAMMPS_VERSION " but loaded into another version: "
                 "rebuild it with scripts/build_lammps_plugin.sh");
    return;
  }
  mlpot_plugin_t plugin;
  plugin.version = MLPOT_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "mlpot";
  plugin.info = "mlpot deployed models (TorchScript) as a pair style";
  plugin.author = "the mlpot developers";
  plugin.creator.v1 = &mlpot_create_pair;
  plugin.handle = handle;
  (*(mlpot_regfunc) regfunc)(&plugin, lmp);
}
