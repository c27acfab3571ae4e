"""One MD run with ASE's integrators: writers, restart, stability checks, extrapolation monitor.

:func:`run_md` drives ``dyn.run(steps)`` of an ASE dynamics object and attaches observers:
every step a stability check (finite energy, bounded energy change and forces; the last good
state is kept) and the extrapolation monitor; every ``interval`` steps a trajectory frame
(extxyz or ASE ``.traj``, with momenta, so a run restarts from its last frame) and a row of the
thermo CSV. Ensembles (``make_dynamics``): ``nve`` (VelocityVerlet), ``langevin``, ``bussi``,
``nose_hoover`` (Nosé–Hoover chain) and ``npt`` (isotropic MTK, Nosé–Hoover chains), all ASE's own.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units

from mlpot.errors import DataError, ExtrapolationError, MDInstabilityError, OutputPathError, SimulationConfigError

log = logging.getLogger(__name__)

ENSEMBLES = ("nve", "langevin", "bussi", "nose_hoover", "npt")
THERMO_COLUMNS = ("step", "time_ps", "epot_eV", "ekin_eV", "etot_eV", "temperature_K", "volume_A3",
                  "n_extrapolating", "energy_std_eV", "max_force_std_eV_A", "mean_force_std_eV_A", "steps_per_s")


def thermalize(atoms: Atoms, temperature_K: float, rng) -> None:
    """Maxwell–Boltzmann momenta at ``temperature_K`` with zero total momentum (ASE's tools); a single atom keeps
    its drawn momentum (its only motion is the centre of mass's: removing it would leave 0 K, which ASE's
    rescaling turns into NaN and thermostats refuse)."""
    try:  # ASE >= 3.29
        from ase.md.velocitydistribution import thermalize_momenta

        thermalize_momenta(atoms, temperature_K, rng=rng)
    except ImportError:  # pragma: no cover - older ASE
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    if len(atoms) > 1:
        from ase.md.velocitydistribution import Stationary

        Stationary(atoms)


def check_positive(**values) -> None:
    """SimulationConfigError for the first value that is not a finite positive number."""
    for name, v in values.items():
        try:
            ok = v is not None and math.isfinite(float(v)) and float(v) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise SimulationConfigError(f"{name} must be a positive number, got {v!r}")


def writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` and check that a file can be written there (OutputPathError otherwise)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".mlpot-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OutputPathError(f"{what} {path} is not writable ({type(e).__name__}: {e.strerror or e})") from None
    return path


def make_dynamics(atoms: Atoms, ensemble: str, timestep_fs: float, temperature_K: float | None = None, rng=None,
                  friction_per_fs: float = 0.01, taut_fs: float = 100.0, tdamp_fs: float = 100.0, tchain: int = 3,
                  pressure_GPa: float = 0.0, pdamp_fs: float = 1000.0, **_ignored):
    """An ASE dynamics object for ``ensemble`` (see :data:`ENSEMBLES`)."""
    check_positive(timestep_fs=timestep_fs)
    dt = float(timestep_fs) * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, dt)
    if ensemble not in ENSEMBLES:
        raise SimulationConfigError(f"unknown ensemble {ensemble!r} (choose from {', '.join(ENSEMBLES)})")
    check_positive(temperature_K=temperature_K)
    T = float(temperature_K)
    if ensemble == "langevin":
        from ase.md.langevin import Langevin

        return Langevin(atoms, dt, temperature_K=T, friction=friction_per_fs / units.fs, fixcm=False, rng=rng)
    if ensemble == "bussi":
        from ase.md.bussi import Bussi

        return Bussi(atoms, dt, temperature_K=T, taut=taut_fs * units.fs, rng=rng)
    if ensemble == "nose_hoover":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, dt, temperature_K=T, tdamp=tdamp_fs * units.fs, tchain=int(tchain))
    from ase.md.nose_hoover_chain import IsotropicMTKNPT

    return IsotropicMTKNPT(atoms, dt, temperature_K=T, pressure_au=pressure_GPa * units.GPa, tdamp=tdamp_fs * units.fs,
                           pdamp=pdamp_fs * units.fs, tchain=int(tchain))


class _Writer:
    """Trajectory frames in extxyz (appended text) or ASE ``.traj`` (appended binary)."""

    def __init__(self, path: Path, append: bool):
        self.path = path
        self.traj = path.suffix == ".traj"
        if not append and path.exists():
            path.unlink()
        self._handle = None
        if self.traj:
            from ase.io.trajectory import Trajectory

            self._handle = Trajectory(str(path), "a" if append else "w")

    def write(self, atoms: Atoms) -> None:
        if self.traj:
            self._handle.write(atoms)
        else:
            with open(self.path, "a") as f:
                ase.io.write(f, atoms, format="extxyz")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def _last_frame(path: Path) -> Atoms | None:
    """The last complete frame of a trajectory; a last frame cut short (a killed run, a full disk) is dropped from
    the file, so that the restart appends after the last complete one."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    if path.suffix == ".traj":
        from ase.io.trajectory import Trajectory

        try:
            with Trajectory(str(path)) as t:
                return t[len(t) - 1] if len(t) else None
        except Exception:  # noqa: BLE001 - a damaged last record
            frames = []
    frames = []
    try:
        for atoms in ase.io.iread(path, index=":", format="extxyz"):
            frames.append(atoms)
    except Exception as exc:  # noqa: BLE001 - ASE raises several types for a frame cut short
        log.warning("%s: the frame after step %s is incomplete (%s); restarting from the last complete frame",
                    path, frames[-1].info.get("step") if frames else "?", type(exc).__name__)
        from mlpot.files import atomic_write

        atomic_write(path, lambda tmp: ase.io.write(tmp, frames, format="extxyz"))
    return frames[-1] if frames else None


def _truncate_thermo(path: Path, last_step: int) -> None:
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) <= last_step]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def run_md(atoms: Atoms, calculator, *, output_dir, ensemble: str = "nve", steps: int = 100, timestep_fs: float = 1.0,
           temperature_K: float | None = 300.0, init_velocities: bool = True, seed: int = 0, interval: int = 10,
           trajectory: str = "md.extxyz", thermo: str = "thermo.csv", restart: bool = False,
           max_energy_change_per_atom: float = 2.0, max_force: float = 100.0, max_extrapolating: int | None = None,
           max_extrapolating_fraction: float | None = 0.5, max_temperature_factor: float | None = 10.0,
           max_force_std: float | None = None, collect: Mapping | None = None,
           progress: bool = True, ensemble_options: Mapping | None = None, observers=()) -> dict:
    """Run ``steps`` MD steps of ``atoms`` with ``calculator``; returns a summary dict.

    ``restart``: continue from the last frame of an existing trajectory (positions, momenta, cell and
    step; the thermo CSV is cut back to that step); the run then ends at step ``steps`` in total.
    ``init_velocities``: Maxwell–Boltzmann at ``temperature_K`` with zero momentum (skipped on restart).
    Every unstable end is an MDInstabilityError naming the step, with the last good state written to
    ``<trajectory>.last_good.extxyz``: NaN energy or forces, an energy change > ``max_energy_change_per_atom``
    eV/atom from the start, a force > ``max_force`` eV/Å, a temperature above ``max_temperature_factor`` times
    the target (at least 1000 K), atoms driven closer than the neighbour list accepts (the calculator's error),
    and (ExtrapolationError, a subclass) more than ``max_extrapolating`` atoms, or a fraction above
    ``max_extrapolating_fraction`` (default 0.5), outside the model's training range, or a committee's largest
    per-atom force spread above ``max_force_std`` (eV/Å). ``collect`` (committees): ``{"lower": σ_lo, "upper": σ_hi,
    "interval": 1, "file": "uncertain.extxyz"}`` writes every ``interval``-th step whose largest per-atom force
    spread σ lies in [σ_lo, σ_hi) (``upper`` null: no upper bound) to ``file``, with ``forces_std`` per atom:
    the frames worth labelling. The thermo CSV has the largest and mean per-atom force spread of committees
    (:mod:`mlpot.md.uncertainty`). ``observers``: extra ``(function(atoms, step), interval)`` pairs.
    """
    from mlpot.md.uncertainty import Collector, force_spread
    from mlpot.md.calculators import check_elements, n_extrapolating

    check_positive(timestep_fs=timestep_fs, interval=interval)
    if max_force_std is not None:
        check_positive(**{"stop.max_force_std": max_force_std})
    if ensemble != "nve" or (init_velocities and not restart):
        check_positive(temperature_K=temperature_K)
    if int(steps) != steps or steps < 0:
        raise SimulationConfigError(f"steps must be an integer >= 0, got {steps!r}")
    out = writable_dir(output_dir, "trajectory folder")
    traj_path, thermo_path = out / trajectory, out / thermo
    rng = np.random.default_rng(seed)
    start = 0
    last = _last_frame(traj_path) if restart else None
    if last is not None:
        start = int(last.info.get("step", 0))
        atoms.set_cell(last.cell, scale_atoms=False)
        atoms.positions = last.positions
        if last.has("momenta"):
            atoms.set_momenta(last.get_momenta(), apply_constraint=False)
        _truncate_thermo(thermo_path, start)
        log.info("restart from %s at step %d", traj_path, start)
    elif init_velocities and temperature_K:
        thermalize(atoms, float(temperature_K), rng)
    check_elements(atoms, calculator)
    atoms.calc = calculator
    dyn = make_dynamics(atoms, ensemble, timestep_fs, temperature_K, rng, **dict(ensemble_options or {}))
    writer = _Writer(traj_path, append=last is not None)
    new_thermo = last is None or not thermo_path.is_file()
    thermo_f = open(thermo_path, "w" if new_thermo else "a", newline="")
    thermo_w = csv.writer(thermo_f)
    if new_thermo:
        thermo_w.writerow(THERMO_COLUMNS)
    ext_path = out / (Path(trajectory).stem + ".extrapolation.csv")
    n_atoms = len(atoms)
    e_start = atoms.get_potential_energy()
    collector = Collector(out, collect, append=last is not None)
    if (max_force_std is not None or collector.active) and force_spread(atoms.calc) is None:
        writer.close()
        thermo_f.close()
        raise SimulationConfigError(
            f"{'stop.max_force_std' if max_force_std is not None else 'collect'} needs a committee model (the "
            f"calculator {type(atoms.calc).__name__} gives no forces_std): use a committee model.pt or "
            "md/calculator=committee")
    t_ref = float(temperature_K) if temperature_K and ensemble != "nve" else float(atoms.get_temperature())
    t_max = None if not max_temperature_factor else max(1000.0, float(max_temperature_factor) * t_ref)
    state = {"last_good": atoms.copy(), "t0": time.perf_counter(), "s0": start, "n_ext_max": 0, "warned": False,
             "rate": 0.0, "max_force_std": None}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(steps), initial=start, unit="step", desc=f"MD {ensemble}", mininterval=1.0)

    def step_now() -> int:
        return start + dyn.nsteps

    def save_last_good() -> Path:
        good = out / (Path(trajectory).stem + ".last_good.extxyz")
        ase.io.write(good, state["last_good"], format="extxyz")
        return good

    def frame(step: int) -> Atoms:
        snap = atoms.copy()
        snap.calc = None
        snap.info.update(step=step, time_ps=step * timestep_fs / 1000.0)
        return snap

    def check():
        step = step_now()
        e = atoms.get_potential_energy()
        forces = atoms.calc.results.get("forces")
        fmax = float(np.abs(forces).max()) if forces is not None and len(forces) else 0.0
        bad = None
        temperature = atoms.get_temperature() if n_atoms > 1 else 0.0
        if not math.isfinite(e) or (forces is not None and not np.all(np.isfinite(forces))):
            bad = "NaN or inf in the energy or forces"
        elif abs(e - e_start) / n_atoms > max_energy_change_per_atom:
            bad = f"energy changed by {(e - e_start) / n_atoms:+.3f} eV/atom (> {max_energy_change_per_atom})"
        elif fmax > max_force:
            bad = f"a force of {fmax:.1f} eV/Å (> {max_force})"
        elif t_max is not None and not temperature <= t_max:
            bad = f"temperature {temperature:.4g} K (> {t_max:.4g} K, stop.max_temperature_factor)"
        if bad:
            raise MDInstabilityError(f"MD step {step}: {bad}; the run is stopped, last good frame in {save_last_good()}")
        sigma = force_spread(atoms.calc)
        if sigma is not None:
            state["max_force_std"] = max(state["max_force_std"] or 0.0, sigma[0])
            collector.offer(step, sigma[0], lambda: frame(step), atoms.calc.results.get("forces_std"))
            if max_force_std is not None and sigma[0] > max_force_std:
                writer.write(frame(step))
                worst = int(np.argmax(atoms.calc.results["forces_std"]))
                raise ExtrapolationError(
                    f"MD step {step}: committee force spread {sigma[0]:.3g} eV/Å on atom {worst} (> stop.max_force_std"
                    f"={max_force_std}); the run is stopped, frame written to {traj_path}, last good frame in "
                    f"{save_last_good()}")
        state["last_good"] = frame(step)
        n = n_extrapolating(atoms.calc)
        if n:
            state["n_ext_max"] = max(state["n_ext_max"], n)
            with open(ext_path, "a") as f:
                f.write(f"{step},{n}\n")
            if not state["warned"]:
                log.warning("MD step %d: %d atom(s) outside the model's training range (logged per step in %s)",
                            step, n, ext_path)
                state["warned"] = True
            limit = (f"stop.max_extrapolating={max_extrapolating}" if max_extrapolating is not None
                     and n > max_extrapolating else f"limit {max_extrapolating_fraction} of the atoms, "
                     "stop.max_extrapolating_fraction" if max_extrapolating_fraction is not None
                     and n / n_atoms > max_extrapolating_fraction else None)
            if limit:
                writer.write(frame(step))
                raise ExtrapolationError(
                    f"MD step {step}: {n} of {n_atoms} atoms outside the model's training range ({limit}); "
                    f"the run is stopped, frame written to {traj_path}, last good frame in {save_last_good()}")
        if bar is not None and step > start:
            bar.update(1)

    def write():
        step = step_now()
        if last is not None and step == start:
            return  # that frame is already in the file
        elapsed = time.perf_counter() - state["t0"]
        state["rate"] = (step - state["s0"]) / elapsed if elapsed > 0 and step > state["s0"] else 0.0
        writer.write(frame(step))
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        n = n_extrapolating(atoms.calc)
        estd = atoms.calc.results.get("energy_std", "")
        sigma = force_spread(atoms.calc)
        fmax_std, fmean_std = ("", "") if sigma is None else (f"{sigma[0]:.6g}", f"{sigma[1]:.6g}")
        thermo_w.writerow([step, f"{step * timestep_fs / 1000.0:.6f}", f"{epot:.8f}", f"{ekin:.8f}",
                           f"{epot + ekin:.8f}", f"{atoms.get_temperature():.3f}", f"{atoms.get_volume():.4f}",
                           "" if n is None else n, estd, fmax_std, fmean_std, f"{state['rate']:.2f}"])
        thermo_f.flush()
        if bar is not None:
            bar.set_postfix_str(f"T={atoms.get_temperature():.0f} K, {state['rate']:.1f} steps/s", refresh=False)

    dyn.attach(check, interval=1)
    dyn.attach(write, interval=int(interval))
    for fn, every in observers:
        dyn.attach(lambda fn=fn: fn(atoms, step_now()), interval=int(every))
    t0 = time.perf_counter()
    try:
        dyn.run(max(0, int(steps) - start))
    except MDInstabilityError:
        raise
    except (DataError, FloatingPointError, ValueError) as exc:  # e.g. atoms driven together: the calculator's error
        raise MDInstabilityError(f"MD step {step_now() + 1}: {' '.join(str(exc).split())}; the run is stopped, last "
                                 f"good frame in {save_last_good()}") from None
    finally:
        writer.close()
        collector.close()
        thermo_f.close()
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    done = max(0, int(steps) - start)
    return {"steps": int(steps), "start_step": start, "wall_s": wall, "steps_per_s": done / wall if wall > 0 else 0.0,
            "trajectory": str(traj_path), "thermo": str(thermo_path), "max_extrapolating": state["n_ext_max"],
            "final_temperature_K": float(atoms.get_temperature()), "max_force_std": state["max_force_std"],
            "n_collected": collector.count, "collected": collector.path_str, "atoms": atoms}
