"""The built-in default data set: fcc Cu (bulk, strained, surfaces, vacancy) and liquid Cu from ASE's EMT.

``generate_emt_cu()`` runs Langevin MD (ASE's own integrator, 4 fs steps) of

- a 3x3x3 conventional fcc Cu supercell (108 atoms, EMT's 0 K lattice constant, so the
  crystals are under 2-6 GPa at 300-900 K) at 300, 500, 700 and 900 K (``md_300K`` ...);
- a melt in a cell expanded to the liquid's zero-pressure density: the crystal is heated at
  3000 K until it has melted, then equilibrated and sampled at 1400 K (``melt_1400K``; EMT Cu
  melts near 1300 K; the sampled liquid diffuses, D ~ 2e-5 cm²/s);
- homogeneously strained crystals (``strained``): ``n_strained`` short runs of a 2x2x2
  supercell (32 atoms) at 100, 300 and 600 K in turn, each in its own cell ``(1 + e_v) I + e``:
  linear volumetric strains e_v evenly spread over -3 ... +3 %, and on every other cell a random
  symmetric strain e with components uniform in -2 ... +2 % (normal and shear; seeded);
- fcc (100), (110) and (111) slabs (``surface_100`` ...; 3x3 in-plane, 7 layers, 6 Å of vacuum
  on each side, at EMT's a0) at 300 and 600 K;
- a vacancy supercell (the 3x3x3 crystal less one atom, 107 atoms; ``vacancy``) at 300 and 700 K.

Every ``interval``-th step is kept. Each frame is labelled by an EMT evaluation of exactly the geometry that is
written (positions are rounded to the 8 decimals that extxyz stores before
evaluation), with energy, forces, stress (ASE sign, eV/Å³, Voigt 6) and
per-atom energies ``energies``, and carries ``config_type``, ``trajectory`` (int id, one per
MD run), ``step`` (MD step since the start of that trajectory) and ``temperature_K`` (the
thermostat target) in ``info``.

The file is cached: a JSON sidecar next to it (``emt_cu.json``) records the
generation parameters, a format version and the file's SHA-256; the file is
regenerated when any of these differ, when it is missing, or on ``force``.
Generation is bit-for-bit deterministic for a given seed and parameters (on a
given machine and ASE/NumPy version).

CLI: ``python -m mlpot.data.builtin [--out PATH] [--force] [--seed N] [--workers N] [--repeat N] ...``
(``--help`` lists the size knobs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import ase
import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary

from mlpot.files import atomic_write

try:  # ASE >= 3.29 (MaxwellBoltzmannDistribution is deprecated there)
    from ase.md.velocitydistribution import thermalize_momenta as _thermalize
except ImportError:  # pragma: no cover - older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    def _thermalize(atoms, temperature_K, rng):
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)

FORMAT_VERSION = 2  # 2: strained, surface and vacancy trajectories added

# EMT's equilibrium fcc lattice constant of Cu (Å): an EOS fit / 1-D minimisation of
# the EMT energy of the conventional cell gives 3.589825; 3.5898 is within 3e-5 Å.
LATTICE_CONSTANT = 3.5898
# The melt runs in an expanded cell: at the crystal's 0 K density the 1400 K liquid is under
# ~15 GPa, where EMT Cu is deeply supercooled (sluggish, glass-like). 1.055 x 3.5898 Å gives
# P = 0.0 +- 0.6 GPa for the 1400 K liquid (measured; 1.03 x: 4.6 GPa, 1.045 x: 1.2 GPa).
MELT_LATTICE_CONSTANT = 3.7872

DEFAULT_PATH = Path("outputs") / "builtin" / "emt_cu.extxyz"  # under the working directory, like runs and stores

# Fixed physics of the data set (recorded in the sidecar so that editing them regenerates).
TEMPERATURES_K = (300.0, 500.0, 700.0, 900.0)
MELT_TEMPERATURE_K = 1400.0
HEAT_TEMPERATURE_K = 3000.0
TIMESTEP_FS = 4.0
FRICTION_PER_FS = 0.01  # Langevin friction (1/fs): 100 fs relaxation time
INTERVAL = 4  # keep every 4th MD step
# strained crystals: linear volumetric strains evenly over +-STRAIN_VOLUMETRIC; every other cell
# also gets a random symmetric strain with components uniform in +-STRAIN_RANDOM
STRAIN_TEMPERATURES_K = (100.0, 300.0, 600.0)
STRAIN_VOLUMETRIC = 0.03
STRAIN_RANDOM = 0.02
# slabs (ase.build fcc100/fcc110/fcc111 at LATTICE_CONSTANT), vacuum on each side (Å, > cutoff)
SURFACES = ("100", "110", "111")
SURFACE_TEMPERATURES_K = (300.0, 600.0)
SURFACE_VACUUM = 6.0
VACANCY_TEMPERATURES_K = (300.0, 700.0)

# Size knobs (defaults: 5 bulk/melt trajectories x 110 frames, 24 strained cells x 8 frames,
# 6 slab runs x 15 frames, 2 vacancy runs x 20 frames = 872 frames)
N_FRAMES_PER_TRAJ = 110
REPEAT = 3
EQUIL_STEPS = 150  # crystal, slab and vacancy trajectories: steps discarded before sampling (0.6 ps)
HEAT_STEPS = 500  # melt: steps at HEAT_TEMPERATURE_K from the crystal (2 ps)
MELT_EQUIL_STEPS = 250  # melt: steps at MELT_TEMPERATURE_K before sampling (1 ps)
N_STRAINED = 24  # strained cells (one short trajectory each; 0: none)
N_FRAMES_STRAINED = 8
STRAIN_REPEAT = 2  # strained cells: STRAIN_REPEAT^3 conventional cells
STRAIN_EQUIL_STEPS = 40
N_FRAMES_SURFACE = 15  # per slab trajectory (0: no slabs)
SLAB_SIZE = 3  # in-plane repeat of the slabs
SLAB_LAYERS = 7
N_FRAMES_VACANCY = 20  # per vacancy trajectory (0: none)

KNOBS = {
    "n_frames_per_traj": N_FRAMES_PER_TRAJ,
    "repeat": REPEAT,
    "equil_steps": EQUIL_STEPS,
    "heat_steps": HEAT_STEPS,
    "melt_equil_steps": MELT_EQUIL_STEPS,
    "n_strained": N_STRAINED,
    "n_frames_strained": N_FRAMES_STRAINED,
    "strain_repeat": STRAIN_REPEAT,
    "strain_equil_steps": STRAIN_EQUIL_STEPS,
    "n_frames_surface": N_FRAMES_SURFACE,
    "slab_size": SLAB_SIZE,
    "slab_layers": SLAB_LAYERS,
    "n_frames_vacancy": N_FRAMES_VACANCY,
}
# smallest value of each knob
_KNOB_MIN = {"n_frames_per_traj": 1, "repeat": 1, "equil_steps": 0, "heat_steps": 0, "melt_equil_steps": 0,
             "n_strained": 0, "n_frames_strained": 1, "strain_repeat": 1, "strain_equil_steps": 0,
             "n_frames_surface": 0, "slab_size": 1, "slab_layers": 2, "n_frames_vacancy": 0}


def generation_parameters(seed: int = 0, **knobs) -> dict:
    """Every parameter that determines the file's content (JSON-compatible); ``knobs``: see ``KNOBS``."""
    unknown = set(knobs) - set(KNOBS)
    if unknown:
        raise TypeError(f"unknown size knob(s) {', '.join(sorted(unknown))}; known: {', '.join(KNOBS)}")
    values = {**KNOBS, **knobs}
    for name, value in values.items():
        low = _KNOB_MIN[name]
        if isinstance(value, bool) or int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return {
        "seed": int(seed),
        "element": "Cu",
        "lattice_constant": LATTICE_CONSTANT,
        "melt_lattice_constant": MELT_LATTICE_CONSTANT,
        "temperatures_K": list(TEMPERATURES_K),
        "melt_temperature_K": MELT_TEMPERATURE_K,
        "heat_temperature_K": HEAT_TEMPERATURE_K,
        "timestep_fs": TIMESTEP_FS,
        "friction_per_fs": FRICTION_PER_FS,
        "interval": INTERVAL,
        "strain_temperatures_K": list(STRAIN_TEMPERATURES_K),
        "strain_volumetric": STRAIN_VOLUMETRIC,
        "strain_random": STRAIN_RANDOM,
        "surfaces": list(SURFACES),
        "surface_temperatures_K": list(SURFACE_TEMPERATURES_K),
        "surface_vacuum": SURFACE_VACUUM,
        "vacancy_temperatures_K": list(VACANCY_TEMPERATURES_K),
        **{name: int(value) for name, value in values.items()},
    }


def _stored_positions(positions: np.ndarray) -> np.ndarray:
    """Positions exactly as extxyz stores them (``%16.8f``), so labels match the written geometry."""
    return np.array([float(f"{v:.8f}") for v in positions.ravel()]).reshape(positions.shape)


LABEL_PROPERTIES = ("energy", "forces", "stress", "energies")


def _label_current(atoms: Atoms, info: dict) -> Atoms:
    """Label the MD state with its own EMT calculator and return a wrapped, stored-precision copy.

    The MD positions are first rounded to the 8 decimals that extxyz keeps (a change of at
    most 5e-9 Å, applied to the trajectory itself so that it stays deterministic), so the
    labels belong to exactly the geometry that is written. Reusing the MD's calculator
    avoids a fresh neighbour-list build per frame.
    """
    atoms.positions = _stored_positions(atoms.positions)
    results = {name: np.array(atoms.calc.get_property(name, atoms), dtype=np.float64) for name in LABEL_PROPERTIES}
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)
    frame.wrap()
    frame.positions = _stored_positions(frame.positions)
    frame.calc = SinglePointCalculator(frame, **results)
    frame.info.update(info)
    return frame


def _langevin(atoms, dt, temperature, friction, rng) -> Langevin:
    return Langevin(atoms, dt, temperature_K=temperature, friction=friction, fixcm=False, rng=rng)


def _strain(params: dict, k: int) -> list[list[float]]:
    """Strain tensor e (3x3, symmetric) of strained cell ``k``: the cell becomes ``cell @ (I + e)``."""
    n = params["n_strained"]
    vol = params["strain_volumetric"]
    # volumetric strains evenly over [-vol, vol], in a seeded order so that temperatures and
    # random shears are not tied to the volume
    order = np.random.default_rng(np.random.SeedSequence([params["seed"], 7919, n])).permutation(n)
    e = np.eye(3) * (np.linspace(-vol, vol, n)[order[k]] if n > 1 else 0.0)
    if k % 2:
        rng = np.random.default_rng(np.random.SeedSequence([params["seed"], 7919, n, k]))
        voigt = rng.uniform(-params["strain_random"], params["strain_random"], 6)
        e += np.array([[voigt[0], voigt[5], voigt[4]], [voigt[5], voigt[1], voigt[3]], [voigt[4], voigt[3], voigt[2]]])
    return e.round(10).tolist()


def _structure(params: dict, spec: dict) -> Atoms:
    """The start structure of a trajectory (fcc positions, before any MD)."""
    kind, el, a0 = spec["kind"], params["element"], params["lattice_constant"]
    if kind == "bulk":
        return bulk(el, "fcc", a=spec["a"], cubic=True).repeat(params["repeat"])
    if kind == "strained":
        atoms = bulk(el, "fcc", a=a0, cubic=True).repeat(params["strain_repeat"])
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + np.array(spec["strain"])), scale_atoms=True)
        return atoms
    if kind == "surface":
        import ase.build

        size = (params["slab_size"], params["slab_size"], params["slab_layers"])
        builder = getattr(ase.build, f"fcc{spec['miller']}")
        return builder(el, size=size, a=a0, vacuum=params["surface_vacuum"], periodic=True)
    if kind == "vacancy":
        atoms = bulk(el, "fcc", a=a0, cubic=True).repeat(params["repeat"])
        del atoms[0]
        return atoms
    raise ValueError(f"unknown structure kind {kind!r}")


def _trajectory(params: dict, traj_id: int, config_type: str, stages: list[tuple[float, int]], spec: dict,
                n_frames: int) -> list[Atoms]:
    """One MD run from the structure ``spec``: ``stages`` of (temperature, steps) discarded, then
    ``n_frames`` frames sampled at the last temperature."""
    rng = np.random.default_rng(np.random.SeedSequence([params["seed"], traj_id]))
    atoms = _structure(params, spec)
    atoms.calc = EMT()
    atoms.set_constraint(FixCom())  # with fixcm=False below (ASE's recommended form since 3.28)
    t_first = stages[0][0]
    _thermalize(atoms, t_first, rng=rng)  # Maxwell-Boltzmann momenta
    Stationary(atoms)
    dt = params["timestep_fs"] * units.fs
    friction = params["friction_per_fs"] / units.fs
    step = 0
    for temperature, n_steps in stages:
        if n_steps:
            _langevin(atoms, dt, temperature, friction, rng).run(n_steps)
            step += n_steps
    t_sample = stages[-1][0]
    dyn = _langevin(atoms, dt, t_sample, friction, rng)
    frames = []
    for _ in range(n_frames):
        dyn.run(params["interval"])
        step += params["interval"]
        info = {"config_type": config_type, "trajectory": traj_id, "step": step, "temperature_K": t_sample}
        frames.append(_label_current(atoms, info))
    return frames


def _jobs(params: dict) -> list[tuple]:
    """(trajectory id, config_type, stages, structure spec, frames) of every trajectory, in file order."""
    a0, nf = params["lattice_constant"], params["n_frames_per_traj"]
    eq = params["equil_steps"]
    jobs = [(f"md_{t:.0f}K", [(t, eq)], {"kind": "bulk", "a": a0}, nf) for t in params["temperatures_K"]]
    melt = params["melt_temperature_K"]
    stages = [(params["heat_temperature_K"], params["heat_steps"]), (melt, params["melt_equil_steps"])]
    jobs.append((f"melt_{melt:.0f}K", stages, {"kind": "bulk", "a": params["melt_lattice_constant"]}, nf))
    temps = params["strain_temperatures_K"]
    for k in range(params["n_strained"]):
        t = temps[k % len(temps)]
        spec = {"kind": "strained", "strain": _strain(params, k)}
        jobs.append(("strained", [(t, params["strain_equil_steps"])], spec, params["n_frames_strained"]))
    if params["n_frames_surface"]:
        for m in params["surfaces"]:
            for t in params["surface_temperatures_K"]:
                jobs.append((f"surface_{m}", [(t, eq)], {"kind": "surface", "miller": m}, params["n_frames_surface"]))
    if params["n_frames_vacancy"]:
        for t in params["vacancy_temperatures_K"]:
            jobs.append(("vacancy", [(t, eq)], {"kind": "vacancy"}, params["n_frames_vacancy"]))
    return [(k, *job) for k, job in enumerate(jobs)]


def _run_job(args) -> list[Atoms]:
    params, job = args
    return _trajectory(params, *job)


def _cost(params: dict, job: tuple) -> int:
    """Rough cost of a job (MD steps x atoms), to start the longest jobs first."""
    _, _, stages, spec, n_frames = job
    atoms = len(_structure(params, spec))
    return atoms * (sum(n for _, n in stages) + n_frames * params["interval"])


def generate_frames(seed: int = 0, workers: int = 1, **knobs) -> list[Atoms]:
    """The labelled frames of the data set, in memory (see :func:`generation_parameters` for ``knobs``).

    ``workers > 1`` runs the (independent) trajectories in that many forked processes; the
    result is identical to the serial one. Forking is only used where the platform offers it.
    """
    params = generation_parameters(seed, **knobs)
    jobs = _jobs(params)
    workers = max(1, min(int(workers), len(jobs)))
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("fork")
        # longest job (the melt) first so that it overlaps the others
        order = sorted(range(len(jobs)), key=lambda k: -_cost(params, jobs[k]))
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            done = dict(zip(order, pool.map(_run_job, [(params, jobs[k]) for k in order]), strict=True))
        per_traj = [done[k] for k in range(len(jobs))]
    else:
        per_traj = [_trajectory(params, *job) for job in jobs]
    return [frame for frames in per_traj for frame in frames]


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a data file: same folder and stem, ``.json``."""
    return Path(path).with_suffix(".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cached(path: Path, params: dict) -> bool:
    side = sidecar_path(path)
    if not (path.is_file() and side.is_file()):
        return False
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(meta, dict)
        and meta.get("format_version") == FORMAT_VERSION
        and meta.get("parameters") == params
        and meta.get("sha256") == _sha256(path)
    )


def generate_emt_cu(
    path: str | os.PathLike | None = None, seed: int = 0, force: bool = False, workers: int = 1, **knobs
) -> Path:
    """Write (or reuse) the built-in EMT Cu data set as one extxyz file and return its path.

    ``path`` defaults to ``<repo>/outputs/builtin/emt_cu.extxyz``; the sidecar
    ``<stem>.json`` sits next to it. ``knobs`` are the size parameters of
    :func:`generation_parameters` (the keys of ``KNOBS``: ``n_frames_per_traj``, ``repeat``,
    ``equil_steps``, ``heat_steps``, ``melt_equil_steps``, ``n_strained``, ``n_frames_strained``,
    ``strain_repeat``, ``strain_equil_steps``, ``n_frames_surface``, ``slab_size``, ``slab_layers``,
    ``n_frames_vacancy``). ``workers`` (processes used when generating) does not change the content.
    """
    path = Path(DEFAULT_PATH if path is None else path)
    params = generation_parameters(seed, **knobs)
    if not force and _cached(path, params):
        return path
    frames = generate_frames(seed, workers=workers, **knobs)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: ase.io.write(tmp, frames, format="extxyz"))
    meta = {
        "format_version": FORMAT_VERSION,
        "parameters": params,
        "n_frames": len(frames),
        "config_types": sorted({f.info["config_type"] for f in frames}),
        "sha256": _sha256(path),
        "ase_version": ase.__version__,
        "numpy_version": np.__version__,
    }
    atomic_write(sidecar_path(path), lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
    return path


def n_frames(path: str | os.PathLike) -> int:
    """Number of frames of a generated file, from its sidecar (falls back to reading the file)."""
    try:
        return int(json.loads(sidecar_path(path).read_text())["n_frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return len(ase.io.read(path, index=":", format="extxyz"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlpot.data.builtin", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help=f"output file (default {DEFAULT_PATH})")
    parser.add_argument("--force", action="store_true", help="regenerate even if a matching file exists")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(5, os.cpu_count() or 1),
                        help="processes for the independent trajectories (default: up to 5 CPUs)")
    for knob, default in KNOBS.items():
        parser.add_argument("--" + knob.replace("_", "-"), type=int, default=None, dest=knob,
                            help=f"size knob (default {default})")
    args = parser.parse_args(argv)
    knobs = {k: getattr(args, k) for k in KNOBS if getattr(args, k) is not None}
    path = generate_emt_cu(args.out, seed=args.seed, force=args.force, workers=args.workers, **knobs)
    print(f"{path} {n_frames(path)} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
