// pair_style mlpot: a deployed mlpot model (mlpot-deploy) in LAMMPS, through libtorch.
//
//   plugin load  <path printed by scripts/build_lammps_plugin.sh>
//   pair_style   mlpot [chunk N]                 # N owned atoms per model call (default 4096)
//   pair_coeff   * * model.lammps.pt Cu Ag        # one element name per LAMMPS atom type
//
// Full neighbour list, newton pair on; energy, per-atom energy, forces, virial (global: f·r over owned and ghost
// atoms; per atom: each pair's virial split between its two atoms). The model's dtype (float32 or float64) is the
// one it was deployed in. Each MPI rank evaluates the atoms it owns; ghost atoms enter only as neighbours.
#ifndef LMP_PAIR_MLPOT_H
#define LMP_PAIR_MLPOT_H

#include "pair.h"

#include <torch/script.h>

#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairMLPot : public Pair {
 public:
  PairMLPot(class LAMMPS *);
  ~PairMLPot() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 protected:
  torch::jit::Module module;
  bool loaded = false;
  std::string path;
  std::vector<std::string> elements;    // the model's elements
  std::vector<int> type_to_species;     // LAMMPS type (1-based) -> model element index
  double cutoff = 0.0;
  double table_cutoff = 0.0;             // > 0: pass the largest count of one element's neighbours within it
  torch::Dtype dtype = torch::kFloat64;
  // work arrays, kept between steps
  std::vector<int> index;               // LAMMPS atom -> row of the model's atom list (-1: not seen)
  std::vector<long> species, pairs;
  std::vector<double> vec;
  std::vector<int> pair_j;              // LAMMPS index of each pair's neighbour
  std::vector<long> pair_row;           // its model row (a centre's, or its element's row)
  std::vector<int> rows;                // model row -> LAMMPS atom
  int chunk = 4096;                      // owned atoms per model call (pair_style mlpot chunk N)
  void allocate();
  std::vector<int> order;               // owned atoms (list positions) in the order they go to the model
  void compute_chunk(const int *members, int n_centres);
};

}    // namespace LAMMPS_NS

#endif
