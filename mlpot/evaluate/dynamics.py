"""Dynamical property recipes: MSD (``tidynamics``' FFT MSD) and diffusion coefficient (Einstein) with a
block-average error, NVE energy drift with its fit error.

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
    """Mean square displacement (Å²) for lags 0..max_lag frames, averaged over atoms and all time origins
    (``tidynamics.msd``, FFT-based, per atom). ``positions``: (n_frames, n_atoms, 3) unwrapped."""
    import tidynamics

    x = np.asarray(positions, dtype=np.float64)
    if remove_com:
        x = x - x.mean(axis=1, keepdims=True)
    n = len(x)
    max_lag = n - 1 if max_lag is None else min(int(max_lag), n - 1)
    m = np.mean([tidynamics.msd(x[:, i, :]) for i in range(x.shape[1])], axis=0)
    return m[: max_lag + 1]


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


def block_sem(x, n_blocks: int = 5) -> float:
    """Standard error of the mean of a correlated series from the means of ``n_blocks`` consecutive blocks."""
    x = np.asarray(x, dtype=np.float64)
    size = len(x) // n_blocks if n_blocks >= 2 else 0
    if size < 1:
        return float("inf")
    means = x[: size * n_blocks].reshape(n_blocks, size).mean(axis=1)
    return float(means.std(ddof=1) / np.sqrt(n_blocks))


def diffusion_blocks(positions: np.ndarray, frame_dt_fs: float, n_blocks: int = 5, fit_from: float = 0.2,
                     max_lag_fraction: float = 0.5, min_block_fs: float = 2000.0) -> dict:
    """D (cm²/s) of the whole trajectory and its uncertainty ``D_err``: the standard error ``D_sem`` from
    ``n_blocks`` independent, consecutive blocks (the spread of the blocks' D over √n_blocks; inf when the
    run is too short to split) and, in quadrature, ``D_nonlinearity``: half the difference of the MSD's
    slopes over the two halves of the fit window (large while the motion is still ballistic or caged).
    Blocks shorter than ``min_block_fs`` (default 2 ps, several velocity-memory times of a liquid metal)
    leave D unresolved (``D_err`` = inf): in them the MSD is not yet linear in t, and the blocks would
    agree on a biased slope. ``positions``: unwrapped frames ``frame_dt_fs`` apart. The blocks must be longer than the
    velocity memory (a few hundred fs in a liquid metal) for the error to hold."""
    x = np.asarray(positions, dtype=np.float64)
    max_lag = max(2, int(max_lag_fraction * (len(x) - 1)))
    m = msd(x, max_lag)
    t = np.arange(len(m)) * frame_dt_fs
    out = diffusion_from_msd(t, m, fit_from)
    out.update({"msd_times_fs": t.tolist(), "msd": m.tolist()})
    # not yet diffusive (ballistic or caged motion still in the fit window): the slopes of the window's two
    # halves differ; half their difference is a systematic error, added to the statistical one
    sel = np.flatnonzero(t >= fit_from * t.max())
    half = len(sel) // 2
    if half >= 2:
        d1 = np.polyfit(t[sel[:half + 1]], m[sel[:half + 1]], 1)[0]
        d2 = np.polyfit(t[sel[half:]], m[sel[half:]], 1)[0]
        out["D_nonlinearity"] = float(abs(d2 - d1) / 2 / 6.0 * A2_PER_FS_TO_CM2_PER_S)
    else:
        out["D_nonlinearity"] = float("inf")
    blocks = []
    size = len(x) // n_blocks if n_blocks >= 2 else 0
    if size >= 5 and size * frame_dt_fs >= min_block_fs:
        for k in range(n_blocks):
            xb = x[k * size:(k + 1) * size]
            mb = msd(xb, max(2, int(max_lag_fraction * (len(xb) - 1))))
            blocks.append(diffusion_from_msd(np.arange(len(mb)) * frame_dt_fs, mb, fit_from)["D"])
        out["D_sem"] = float(np.std(blocks, ddof=1) / np.sqrt(len(blocks)))
        out["D_err"] = float(np.hypot(out["D_sem"], out["D_nonlinearity"]))
    else:
        out["D_err"] = float("inf")
    out["D_blocks"] = blocks
    return out


def _run(atoms: Atoms, calculator, ensemble: str, steps: int, timestep_fs: float, temperature_K, interval: int,
         collect, seed: int, **ensemble_options):
    dyn = make_dynamics(atoms, ensemble, timestep_fs, temperature_K, np.random.default_rng(seed), **ensemble_options)
    if collect is not None:
        dyn.attach(collect, interval=interval)
    dyn.run(steps)


def diffusion(atoms: Atoms, calculator, temperature_K: float = 1400.0, timestep_fs: float = 2.0,
              equil_steps: int = 500, steps: int = 5000, interval: int = 10, ensemble: str = "bussi",
              taut_fs: float = 200.0, seed: int = 0, thermalize_first: bool = True, fit_from: float = 0.2,
              max_lag_fraction: float = 0.5, frame_interval: int | None = None, n_blocks: int = 5,
              min_block_fs: float = 2000.0) -> dict:
    """Diffusion coefficient (cm²/s) from the MSD of an NVT run (Bussi's thermostat by default, weakly
    coupled so that the dynamics stay close to NVE). ``atoms`` is typically an equilibrated liquid.

    Returns D ± ``D_err`` (standard error over ``n_blocks`` blocks, :func:`diffusion_blocks`), the MSD curve (``msd_times_fs``, ``msd``), the mean temperature, the last frame (``final``)
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
    out = diffusion_blocks(np.asarray(pos), interval * timestep_fs, n_blocks, fit_from, max_lag_fraction,
                           min_block_fs)
    out.update({"mean_temperature_K": float(np.mean(temps)), "mean_temperature_K_err": block_sem(temps, n_blocks),
                "n_frames": len(pos), "final": a, "frames": frames})
    return out


def nve_drift(atoms: Atoms, calculator, temperature_K: float = 800.0, timestep_fs: float = 1.0, steps: int = 10000,
              equil_steps: int = 500, interval: int = 10, seed: int = 0) -> dict:
    """Energy drift of NVE (velocity Verlet) in meV/atom/ps: slope of a linear fit of the total energy
    per atom against time (``nve_drift_err``: the fit's standard error, widened by √(2τ) for the
    residuals' correlation time τ in samples), after ``equil_steps`` of Langevin at ``temperature_K`` from Maxwell–Boltzmann
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
    from scipy.stats import linregress

    t, e = np.asarray(t), np.asarray(e)
    fit = linregress(t, e)
    slope, intercept = fit.slope, fit.intercept
    resid = e - (slope * t + intercept)
    # the fit's standard error, widened by the correlation time of the residuals (samples are not independent)
    r = resid - resid.mean()
    ac = np.correlate(r, r, "full")[len(r) - 1:] / (np.dot(r, r) or 1.0)
    n_corr = int(np.argmax(ac < np.exp(-1))) if np.any(ac < np.exp(-1)) else len(r)
    inefficiency = max(1.0, 2.0 * n_corr)
    return {"nve_drift": float(abs(slope) * 1000.0), "nve_drift_signed": float(slope * 1000.0),
            "nve_drift_err": float(fit.stderr * np.sqrt(inefficiency) * 1000.0),
            "nve_fluctuation": float(resid.std() * 1000.0), "mean_temperature_K": float(np.mean(temps)),
            "times_ps": t.tolist(), "etot_per_atom": e.tolist(), "drift_per_atom": (e - e[0]).tolist(), "duration_ps": float(t[-1] - t[0])}
