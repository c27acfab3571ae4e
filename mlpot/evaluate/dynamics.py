"""Dynamical property recipes: MSD and diffusion coefficient (Einstein), NVE energy drift.

Both recipes run ASE's integrators (through :func:`mlpot.md.runner.make_dynamics`) on a copy of the
given atoms and return plain dicts; :func:`msd` and :func:`diffusion_from_msd` work on any
trajectory of unwrapped positions (ASE's MD never wraps positions).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from mlpot.errors import SimulationConfigError
from mlpot.md.runner import check_positive, make_dynamics, thermalize

A2_PER_FS_TO_CM2_PER_S = 0.1  # 1 Å²/fs = 1e-16 cm² / 1e-15 s


def msd(positions: np.ndarray, max_lag: int | None = None, remove_com: bool = True) -> np.ndarray:
    """Mean square displacement (Å²) for lags 0..max_lag frames, averaged over atoms and all time origins.

    ``positions``: (n_frames, n_atoms, 3) unwrapped."""
    x = np.asarray(positions, dtype=np.float64)
    if remove_com:
        x = x - x.mean(axis=1, keepdims=True)
    n = len(x)
    max_lag = n - 1 if max_lag is None else min(int(max_lag), n - 1)
    out = np.zeros(max_lag + 1)
    for lag in range(1, max_lag + 1):
        out[lag] = np.mean(np.sum((x[lag:] - x[:-lag]) ** 2, axis=-1))
    return out


def diffusion_from_msd(times_fs: np.ndarray, msd_a2: np.ndarray, fit_from: float = 0.2) -> dict:
    """D = slope/6 of a straight-line fit of MSD(t) over t >= ``fit_from`` × t_max (Einstein relation).

    Returns D in cm²/s and Å²/ps and the fit's intercept."""
    t, m = np.asarray(times_fs, dtype=np.float64), np.asarray(msd_a2, dtype=np.float64)
    sel = t >= fit_from * t.max()
    if sel.sum() < 2:
        raise SimulationConfigError("diffusion: too few MSD points to fit")
    slope, intercept = np.polyfit(t[sel], m[sel], 1)
    d = slope / 6.0  # Å²/fs
    return {"D": float(d * A2_PER_FS_TO_CM2_PER_S), "D_A2_per_ps": float(d * 1000.0), "msd_intercept": float(intercept)}


def _run(atoms: Atoms, calculator, ensemble: str, steps: int, timestep_fs: float, temperature_K, interval: int,
         collect, seed: int, **ensemble_options):
    dyn = make_dynamics(atoms, ensemble, timestep_fs, temperature_K, np.random.default_rng(seed), **ensemble_options)
    if collect is not None:
        dyn.attach(collect, interval=interval)
    dyn.run(steps)


def diffusion(atoms: Atoms, calculator, temperature_K: float = 1400.0, timestep_fs: float = 2.0,
              equil_steps: int = 500, steps: int = 5000, interval: int = 10, ensemble: str = "bussi",
              taut_fs: float = 200.0, seed: int = 0, thermalize_first: bool = True, fit_from: float = 0.2,
              max_lag_fraction: float = 0.5, frame_interval: int | None = None) -> dict:
    """Diffusion coefficient (cm²/s) from the MSD of an NVT run (Bussi's thermostat by default, weakly
    coupled so that the dynamics stay close to NVE). ``atoms`` is typically an equilibrated liquid.

    Returns D, the MSD curve (``msd_times_fs``, ``msd``), the mean temperature, the last frame (``final``)
    and, with ``frame_interval`` (steps, a multiple of ``interval``), the wrapped ``frames`` for structure analysis."""
    check_positive(temperature_K=temperature_K, timestep_fs=timestep_fs, steps=steps, interval=interval)
    a = atoms.copy()
    a.calc = calculator
    if thermalize_first:
        thermalize(a, temperature_K, np.random.default_rng(seed))
    if equil_steps:
        _run(a, calculator, ensemble, equil_steps, timestep_fs, temperature_K, interval, None, seed, taut_fs=taut_fs)
    pos, temps, frames = [], [], []

    def collect():
        pos.append(a.get_positions().copy())
        temps.append(a.get_temperature())
        if frame_interval and ((len(pos) - 1) * interval) % frame_interval == 0:
            f = a.copy()
            f.calc = None
            f.wrap()
            frames.append(f)

    _run(a, calculator, ensemble, steps, timestep_fs, temperature_K, interval, collect, seed + 1, taut_fs=taut_fs)
    pos = np.asarray(pos)
    max_lag = max(2, int(max_lag_fraction * (len(pos) - 1)))
    m = msd(pos, max_lag)
    t = np.arange(len(m)) * interval * timestep_fs
    out = diffusion_from_msd(t, m, fit_from)
    out.update({"msd_times_fs": t.tolist(), "msd": m.tolist(), "mean_temperature_K": float(np.mean(temps)),
                "n_frames": len(pos), "final": a, "frames": frames})
    return out


def nve_drift(atoms: Atoms, calculator, temperature_K: float = 800.0, timestep_fs: float = 1.0, steps: int = 10000,
              equil_steps: int = 500, interval: int = 10, seed: int = 0) -> dict:
    """Energy drift of NVE (velocity Verlet) in meV/atom/ps: slope of a linear fit of the total energy
    per atom against time, after ``equil_steps`` of Langevin at ``temperature_K`` from Maxwell–Boltzmann
    velocities. Also returns the total-energy fluctuation (std about the fit, meV/atom) and the curve."""
    check_positive(temperature_K=temperature_K, timestep_fs=timestep_fs, steps=steps, interval=interval)
    a = atoms.copy()
    a.calc = calculator
    thermalize(a, temperature_K, np.random.default_rng(seed))
    if equil_steps:
        _run(a, calculator, "langevin", equil_steps, timestep_fs, temperature_K, interval, None, seed,
             friction_per_fs=0.02)
    n = len(a)
    t, e, temps = [], [], []
    step = [0]

    def collect():
        t.append(step[0] * timestep_fs / 1000.0)
        e.append(a.get_total_energy() / n)
        temps.append(a.get_temperature())
        step[0] += interval

    _run(a, calculator, "nve", steps, timestep_fs, None, interval, collect, seed)
    t, e = np.asarray(t), np.asarray(e)
    slope, intercept = np.polyfit(t, e, 1)
    resid = e - (slope * t + intercept)
    return {"nve_drift": float(abs(slope) * 1000.0), "nve_drift_signed": float(slope * 1000.0),
            "nve_fluctuation": float(resid.std() * 1000.0), "mean_temperature_K": float(np.mean(temps)),
            "times_ps": t.tolist(), "etot_per_atom": e.tolist(), "duration_ps": float(t[-1] - t[0])}
