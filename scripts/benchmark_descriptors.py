#!/usr/bin/env python
"""Descriptor speed: mlpot's ACSF beside torchani's AEVComputer and dscribe's ACSF.

Structure: 256-atom bcc Na (cubic cell, a = 4.23 Å, repeated 4x4x8, positions rattled by
0.1 Å with seed 0), r_c = 6 Å, the Au study's 8 radial + 18 angular functions.
Prints ms per structure, float32 and float64, for

  mlpot     neighbour list + graph (vesin via ``atoms_to_graph``; the descriptor takes the
            graph), descriptor forward, forward + gradient (d sum(G) / d positions), energy +
            forces of a 2x25 tanh HDNNP, and "total" rows that include the neighbour list;
  torchani  ``AEVComputer`` (8 radial + 3 shifts x 6 sections = 18 angular terms) with its
            pure-torch cell list and pbc; the same from precomputed neighbours (like for like
            with mlpot's descriptor rows); AEV + the same 2x25 MLP, energy + forces;
  dscribe   ``ACSF`` with the same 8 g2 + 18 g5 functions (g5 = n2p2 type 9), forward only.

Each row is the median of ``--repeats`` calls after ``--warmup`` calls; all rows of one dtype
are timed round-robin, so a change in machine load hits every row alike. Forward rows run
under ``torch.no_grad``. Peers that are not installed are reported as such.

Run:  python scripts/benchmark_descriptors.py [--threads 2] [--repeats 20] [--warmup 3] [--device cpu|cuda]

Remaining differences from like for like:
  * cutoff: mlpot uses the Au study's poly2; torchani (stock) and dscribe use the cosine one.
    With the cosine cutoff, mlpot's 26 columns equal dscribe's (after its G1) to 1e-14.
  * torchani's terms are ANI-style: radial = one eta with 8 shifts (same count of exp as 8
    etas with r_s = 0); angular = exp(-eta ((r_ij + r_ik)/2 - shift)^2) times
    ((1 + cos(theta - section)) / 2)^zeta with acos and a real power, vs G9's
    exp(-eta (r_ij^2 + r_ik^2)) (1 + lambda cos theta)^zeta with integer zeta. Both are
    factorised (3 radial x 6 angular factors per triplet). Its angular cutoff is 5.99 Å
    (it must be below the radial one), and it works on a half pair list (mlpot: full list).
  * dscribe is C++ on one core (threads do not apply), always computes in float64 (its float32
    only casts the output), adds a G1 column (27 features) and has only numerical derivatives
    (a full finite-difference Jacobian, minutes per structure): its fwd+grad is not timed.
  * with --device cuda the mlpot neighbour list still runs on the CPU (vesin) and the graph is
    copied to the GPU inside the timed call; dscribe always runs on the CPU.
"""

import argparse
import importlib.metadata
import os
import platform
import statistics
import time

import torch
from ase.build import bulk
from torch import nn

from mlpot.data import atoms_to_graph
from mlpot.descriptors import au_study
from mlpot.descriptors.acsf import AU_ANGULAR_ETA, AU_RADIAL_ETA
from mlpot.descriptors.geometry import triplets
from mlpot.models import HDNNP, Potential

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")  # no compiled extensions needed here
try:
    import torchani
    from torchani.aev import AEVComputer, ANIAngular, ANIRadial
    from torchani.neighbors import Neighbors, reconstruct_shifts
except ImportError:
    torchani = None
try:
    import dscribe
    from dscribe.descriptors import ACSF as DscribeACSF
except ImportError:
    dscribe = None

CUTOFF = 6.0
ELEMENTS = ["Na"]
NOT_INSTALLED, NOT_AVAILABLE = "not installed", "n/a"


def na_cell():
    atoms = bulk("Na", "bcc", a=4.23, cubic=True).repeat((4, 4, 8))
    atoms.rattle(stdev=0.1, seed=0)
    return atoms


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def mlp(n_in: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, 25), nn.Tanh(), nn.Linear(25, 25), nn.Tanh(), nn.Linear(25, 1))


def mlpot_cases(atoms, dtype, device):
    """Callables for the mlpot rows."""
    descriptor = au_study(ELEMENTS, cutoff=CUTOFF).to(device)
    torch.manual_seed(0)
    head = HDNNP(descriptor.n_features_per_element, (25, 25), "tanh")
    pot = Potential(ELEMENTS, au_study(ELEMENTS, cutoff=CUTOFF), head)  # own copy: .to(dtype) casts buffers
    pot = pot.to(device=device, dtype=dtype)

    def graph():
        return atoms_to_graph(atoms, ELEMENTS, CUTOFF, dtype=dtype, with_labels=False).to(device)

    g = graph()
    def desc(gr, grad):
        pos = gr.positions.detach().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            G = descriptor(pos, gr.species, gr.edge_index, gr.shifts, gr.cell, gr.batch)
        if grad:
            torch.autograd.grad(G.sum(), pos)

    return {
        "neighbour list + graph": graph,
        "descriptor fwd": lambda: desc(g, False),
        "descriptor fwd+grad": lambda: desc(g, True),
        "HDNNP 2x25 energy+forces": lambda: pot(g, forces=True),
        "total: NL+graph + descriptor fwd": lambda: desc(graph(), False),
        "total: NL+graph + descriptor fwd+grad": lambda: desc(graph(), True),
        "total: NL+graph + HDNNP energy+forces": lambda: pot(graph(), forces=True),
    }


def torchani_cases(atoms, dtype, device):
    """Callables for the torchani rows (8 radial, 3 x 6 = 18 angular terms, one species)."""
    radial = ANIRadial.cover_linearly(start=0.9, cutoff=CUTOFF, eta=2.0, num_shifts=8)
    angular = ANIAngular.cover_linearly(
        start=0.9, cutoff=CUTOFF - 0.01, eta=2.0, zeta=4.0, num_shifts=3, num_sections=6
    )
    aev = AEVComputer(radial, angular, num_species=1, neighborlist="cell_list").to(device=device, dtype=dtype)
    torch.manual_seed(0)
    head = mlp(aev.out_dim).to(device=device, dtype=dtype)
    species = torch.zeros(1, len(atoms), dtype=torch.long, device=device)
    coords = torch.tensor(atoms.positions, dtype=dtype, device=device)[None]
    cell = torch.tensor(atoms.cell.array, dtype=dtype, device=device)
    pbc = torch.tensor([True, True, True], device=device)
    with torch.no_grad():  # neighbours once, for the "precomputed" rows (pair vectors rebuilt per call)
        nb = aev.neighborlist(aev.radial.cutoff, species, coords, cell, pbc)
        shifts = reconstruct_shifts(coords, nb)

    def from_neighbours(pos):
        flat = pos.view(-1, 3)
        diff = flat.index_select(0, nb.indices[0]) - flat.index_select(0, nb.indices[1]) + shifts
        return aev.compute_from_neighbors(species, pos, Neighbors(nb.indices, diff.norm(dim=-1), diff))

    with torch.no_grad():  # same AEVs both ways
        assert torch.allclose(from_neighbours(coords), aev(species, coords, cell, pbc), rtol=1e-4, atol=1e-5)

    def run(fn, grad):
        pos = coords.detach().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            out = fn(pos)
        if grad:
            torch.autograd.grad(out.sum(), pos)

    full = lambda pos: aev(species, pos, cell, pbc)  # noqa: E731
    return {
        "fwd (incl. its cell-list NL)": lambda: run(full, False),
        "fwd+grad (incl. its cell-list NL)": lambda: run(full, True),
        "fwd, precomputed neighbours": lambda: run(from_neighbours, False),
        "fwd+grad, precomputed neighbours": lambda: run(from_neighbours, True),
        "AEV + 2x25 MLP energy+forces (incl. NL)": lambda: run(lambda pos: head(full(pos)), True),
    }


def dscribe_cases(atoms, dtype):
    acsf = DscribeACSF(
        r_cut=CUTOFF,
        g2_params=[[eta, 0.0] for eta in AU_RADIAL_ETA],
        g5_params=[[eta, zeta, lam] for eta in AU_ANGULAR_ETA for zeta in (2, 3, 4) for lam in (1, -1)],
        species=ELEMENTS,
        periodic=True,
        dtype=str(dtype).removeprefix("torch."),
    )
    assert acsf.create(atoms).shape == (len(atoms), 27)  # G1 + 8 g2 + 18 g5
    return {"fwd": lambda: acsf.create(atoms), "fwd+grad (numerical Jacobian only)": NOT_AVAILABLE}


def time_cases(cases, warmup, repeats, sync):
    """Median ms per call of every callable, timed round-robin."""
    runnable = {k: f for k, f in cases.items() if callable(f)}
    for f in runnable.values():
        for _ in range(warmup):
            f()
    sync()
    times = {k: [] for k in runnable}
    for _ in range(repeats):
        for k, f in runnable.items():
            t0 = time.perf_counter()
            f()
            sync()
            times[k].append(time.perf_counter() - t0)
    return {k: (1e3 * statistics.median(times[k]) if k in times else cases[k]) for k in cases}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per row (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls per row first")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device of the torch rows")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    atoms = na_cell()
    g = atoms_to_graph(atoms, ELEMENTS, CUTOFF, with_labels=False)
    n_trip = triplets(g.edge_index[0], len(atoms))[0].numel()
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.2f})")
    gpu = f", GPU: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}{gpu}, "
          f"python {platform.python_version()}")
    print(f"bcc Na: {len(atoms)} atoms, r_c = {CUTOFF} Å, {g.edge_index.shape[1]} pairs (full list), "
          f"{n_trip} triplets; median of {args.repeats} after {args.warmup} warm-up calls, ms per structure\n")

    groups = [("mlpot (ACSF 8 G2 + 18 G9, poly2 cutoff)", lambda dt: mlpot_cases(atoms, dt, device))]
    peers = [
        (torchani, "torchani", "AEVComputer 8 + 18, cosine", lambda dt: torchani_cases(atoms, dt, device),
         ["fwd (incl. its cell-list NL)", "fwd+grad (incl. its cell-list NL)", "fwd+grad, precomputed neighbours"]),
        (dscribe, "dscribe", "ACSF 8 g2 + 18 g5, cosine, CPU, 1 core", lambda dt: dscribe_cases(atoms, dt), ["fwd"]),
    ]
    for module, name, what, make, rows in peers:
        if module is None:
            groups.append((f"{name} ({NOT_INSTALLED})", lambda dt, rows=rows: dict.fromkeys(rows, NOT_INSTALLED)))
        else:
            groups.append((f"{name} {importlib.metadata.version(name)} ({what})", make))

    results = {}  # (group, row) -> {dtype: ms or text}
    for dtype in (torch.float32, torch.float64):
        cases = {(title, row): f for title, make in groups for row, f in make(dtype).items()}
        for key, ms in time_cases(cases, args.warmup, args.repeats, sync).items():
            results.setdefault(key, {})[dtype] = ms

    fmt = lambda v: f"{v:>14.2f}" if isinstance(v, float) else f"{v:>14}"  # noqa: E731
    print(f"{'':46}{'float32':>14}{'float64':>14}")
    for k, ((title, row), vals) in enumerate(results.items()):
        if k == 0 or title != list(results)[k - 1][0]:
            print(title)
        print(f"  {row:44}" + "".join(fmt(vals[dt]) for dt in (torch.float32, torch.float64)))

    print(f"load average at the end {os.getloadavg()[0]:.2f} (near {os.cpu_count()} or above: other processes competed)")
    mine = next(t for t, _ in groups if t.startswith("mlpot"))
    ani = next(t for t, _ in groups if t.startswith("torchani"))
    parts = []
    for dt in (torch.float32, torch.float64):
        m, a = results[(mine, "descriptor fwd+grad")][dt], results[(ani, "fwd+grad, precomputed neighbours")][dt]
        mt = results[(mine, "total: NL+graph + descriptor fwd+grad")][dt]
        at = results[(ani, "fwd+grad (incl. its cell-list NL)")][dt]
        if isinstance(a, float):
            parts.append(f"{str(dt)[6:]} {m / a:.2f} ({mt / at:.2f})")
    print("\nratio mlpot descriptor fwd+grad / torchani fwd+grad, precomputed neighbours (in brackets: both "
          "incl. their neighbour lists): " + ("; ".join(parts) or f"torchani {NOT_INSTALLED}") + "; target <= 0.5")


if __name__ == "__main__":
    main()
