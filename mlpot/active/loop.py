"""Active learning: label only what the committee does not know.

One iteration, each stage's result kept in ``<out>/iter_<k>/`` so that an interrupted loop resumes where it stopped
(a stage whose files exist is not redone, and every random choice is seeded by the iteration and trajectory, so a
resumed loop makes the same selection as an uninterrupted one):

1. **train**: K committee members on the labelled frames (``labelled.extxyz``), each by ``python -m mlpot.train``
   with its own ``seed`` (its own initial weights; the same train/validation/test split unless ``committee.split`` is ``different``) →
   ``members/m<i>/model.pt``, combined into one committee file ``committee.pt`` (:func:`mlpot.export.save_committee`);
2. **explore**: MD (Langevin) with the committee (:class:`~mlpot.calculator.MLPotCalculator` of the file) from each
   exploration structure at each temperature; every ``interval`` steps a candidate frame with its largest
   per-atom force spread σ_F (eV/Å, norm of the per-component standard deviation over the members); a trajectory
   stops at the first frame above ``select.upper`` (the committee is lost there; what follows is not physical)
   → ``candidates.extxyz`` and ``explore.json``;
3. **select**: candidates with ``lower <= σ_F <= upper``, largest σ_F first, at most one per ``min_gap`` frames of a
   trajectory, at most ``max_per_iteration`` → ``selected.json``;
4. **label**: the reference calculator (any ASE calculator) gives energy, forces and stress of the selected frames;
   they join the labelled set of the next iteration (``iter_<k+1>/labelled.extxyz``).

The loop ends when no candidate's σ_F reaches ``lower`` (converged), or when ``budget.iterations`` or
``budget.max_labelled`` is spent. ``<out>/active_learning.json`` lists per iteration ``n_labelled``, the
thresholds, the members' mean validation and test metrics, the committee file (``model``) and its members, and the
exploration counts; ``final_model`` is the last committee.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import bulk, surface
from ase.calculators.singlepoint import SinglePointCalculator

from mlpot.errors import SimulationConfigError
from mlpot.files import atomic_write, write_text

log = logging.getLogger(__name__)

STATE = "active_learning.json"


# ---------------------------------------------------------------- structures
def crystal_cell(element: str, crystal: str, a: float, repeat: Sequence[int]) -> Atoms:
    """The conventional cubic cell (or ASE's hcp cell) of ``crystal`` repeated ``repeat`` times."""
    cubic = crystal in ("fcc", "bcc", "diamond", "sc")
    return bulk(element, crystal, a=a, cubic=cubic).repeat(tuple(repeat))


def exploration_structure(kind: str, element: str, crystal: str, a: float, repeat: Sequence[int]) -> Atoms:
    """``bulk``, ``vacancy`` (bulk less one atom), ``surface`` ((111) slab of 4 layers, 8 Å vacuum, periodic in
    all directions), ``compressed`` (bulk at 0.92 of the volume) or ``expanded`` (1.08)."""
    cell = crystal_cell(element, crystal, a, repeat)
    if kind == "bulk":
        return cell
    if kind == "vacancy":
        del cell[0]
        return cell
    if kind in ("compressed", "expanded"):
        s = (0.92 if kind == "compressed" else 1.08) ** (1 / 3)
        cell.set_cell(cell.cell * s, scale_atoms=True)
        return cell
    if kind == "surface":
        slab = surface(bulk(element, crystal, a=a, cubic=crystal != "hcp"), (1, 1, 1) if crystal != "hcp" else
                       (0, 0, 1), 4, vacuum=4.0, periodic=True)
        return slab.repeat((max(1, repeat[0] // 2), max(1, repeat[1] // 2), 1)) if len(slab) < 16 else slab
    raise SimulationConfigError(f"explore.structures: unknown structure {kind!r} "
                                "(bulk, vacancy, surface, compressed, expanded)")


def initial_frames(reference, element: str, crystal: str, a: float, repeat: Sequence[int], n_frames: int,
                   rattle: float, strain: float, seed: int) -> list[Atoms]:
    """``n_frames`` labelled starting frames: the bulk cell, randomly strained (±``strain``) and rattled
    (``rattle`` Å standard deviation), labelled by ``reference``."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_frames):
        atoms = crystal_cell(element, crystal, a, repeat)
        eps = rng.uniform(-strain, strain, (3, 3))
        atoms.set_cell(atoms.cell @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
        frames.append(label(atoms, reference, f"initial_{k}"))
    return frames


# ---------------------------------------------------------------- stages
def label(atoms: Atoms, reference, config_type: str) -> Atoms:
    """A copy of ``atoms`` with the reference's energy, forces (and stress when periodic) attached."""
    atoms = atoms.copy()
    atoms.calc = reference
    results = {"energy": float(atoms.get_potential_energy()), "forces": atoms.get_forces().copy()}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress().copy()
    out = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    out.info["config_type"] = config_type
    out.calc = SinglePointCalculator(out, **results)
    return out


def train_member(labelled: Path, run_dir: Path, seed: int, overrides: Sequence[str], split_seed: int | None = None) -> Path:
    """``python -m mlpot.train`` on ``labelled`` into ``run_dir`` (skipped when its model.pt exists); with
    ``split_seed`` every member holds out the same validation and test frames (only the weights differ)."""
    model = run_dir / "model.pt"
    if model.is_file():
        return model
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlpot.train", "data=xyz", f"data.path={labelled}", f"run_dir={run_dir}",
           f"hydra.run.dir={run_dir}", f"seed={seed}", f"data.cache_dir={run_dir / 'cache'}",
           "trainer.enable_progress_bar=false", *([f"data.split.seed={split_seed}"] if split_seed is not None else []),
           *overrides]
    with open(run_dir / "train.out", "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    if proc.returncode != 0 or not model.is_file():
        lines = (run_dir / "train.out").read_text().strip().splitlines()
        last = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "?")
        raise SimulationConfigError(f"committee member {run_dir} failed to train: {last.strip()} "
                                    f"(log: {run_dir / 'train.out'})")
    return model


def train_members(labelled: Path, members_dir: Path, seeds: Sequence[int], overrides: Sequence[str],
                  split_seed: int | None = None, parallel: int = 1, names: Sequence[str] | None = None) -> list[Path]:
    """:func:`train_member` for every seed (member ``i`` in ``members_dir/m<i>``, or ``names[i]``), ``parallel``
    processes at once; a failure is raised once the members already running have finished (the others are not
    started)."""
    names = list(names) if names is not None else [f"m{i}" for i in range(len(seeds))]
    jobs = [(members_dir / n, s) for n, s in zip(names, seeds)]
    if parallel <= 1:
        return [train_member(labelled, d, s, overrides, split_seed) for d, s in jobs]
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=parallel)
    futures = [pool.submit(train_member, labelled, d, s, overrides, split_seed) for d, s in jobs]
    try:
        return [f.result() for f in futures]
    finally:  # on a failure the members not yet started are not started; the running ones finish
        pool.shutdown(wait=True, cancel_futures=True)


def retrain_poor_members(models: Sequence[Path], labelled: Path, members_dir: Path, seeds: Sequence[int],
                         overrides: Sequence[str], factor: float | None, split_seed: int | None = None,
                         parallel: int = 1) -> tuple[list[Path], list[int]]:
    """Members whose validation force RMSE exceeds ``factor`` times the committee's median (a fit stuck in a poor
    minimum: its spread would be large everywhere and steer the selection) are trained once more with another seed
    (``m<i>_retry``, seed + 500), which takes its place (with ``committee.split=different`` the two hold out
    different frames, so their validation errors do not compare). Returns the members and the indices retrained."""
    models = list(models)
    if not factor:
        return models, []
    rmse = np.array([_member_metrics(m).get("val/forces_rmse", np.nan) for m in models], dtype=float)
    if not np.isfinite(rmse).all():
        return models, []
    median = np.median(rmse)
    poor = [i for i, r in enumerate(rmse) if r > factor * median]
    if not poor:
        return models, []
    for i in poor:
        log.warning("committee member %s: validation force RMSE %.4f eV/A is %.1f times the committee's median; "
                    "training it again with another seed", models[i].parent, rmse[i], rmse[i] / median)
    retries = train_members(labelled, members_dir, [seeds[i] + 500 for i in poor], overrides, split_seed, parallel,
                            names=[f"m{i}_retry" for i in poor])
    for i, new in zip(poor, retries):
        models[i] = new
    return models, poor


def write_committee(models: Sequence[Path], path: Path) -> Path:
    """The members in one committee file (:func:`mlpot.export.save_committee`), unless it exists."""
    from mlpot.export import save_committee

    return path if path.is_file() else save_committee([str(m) for m in models], path)


def committee(model: Path | Sequence[Path], dtype: str | None = None):
    """The calculator of a committee file (or of member files, combined first in memory): mean and ``forces_std``."""
    from mlpot.calculator import MLPotCalculator

    if not isinstance(model, (str, os.PathLike)):
        from mlpot.export import load
        from mlpot.models.committee import Committee

        model = Committee([load(m) for m in model])
    return MLPotCalculator(model, dtype=dtype)


def explore(calc, structures: Sequence[str], temperatures: Sequence[float], *, element: str, crystal: str, a: float,
            repeat: Sequence[int], steps: int, interval: int, timestep_fs: float, upper: float,
            seed: int) -> tuple[list[Atoms], list[dict]]:
    """Candidate frames (with σ_F in ``info``) and one summary per trajectory."""
    from ase.md.langevin import Langevin

    from mlpot.md.runner import thermalize

    frames, runs = [], []
    for s_index, kind in enumerate(structures):
        for t_index, T in enumerate(temperatures):
            traj = f"{kind}_{T:g}K"
            rng = np.random.default_rng([seed, s_index, t_index])
            atoms = exploration_structure(kind, element, crystal, a, repeat)
            atoms.calc = calc
            thermalize(atoms, float(T), rng)
            dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=float(T), friction=0.02, rng=rng, fixcm=False)
            summary = {"trajectory": traj, "frames": 0, "max_force_std": 0.0, "stopped_at_step": None}
            for step in range(0, steps + 1, interval):
                if step:
                    dyn.run(interval)
                atoms.get_forces()  # cached after a step; evaluates the start of a trajectory
                sigma = float(calc.results["max_force_std"])
                frame = atoms.copy()
                frame.calc = None
                frame.info.update(trajectory=traj, step=step, interval=interval, max_force_std=sigma,
                                  temperature_K=float(T))
                frames.append(frame)
                summary["frames"] += 1
                summary["max_force_std"] = max(summary["max_force_std"], sigma)
                if sigma > upper or not np.isfinite(sigma):
                    summary["stopped_at_step"] = step
                    break
            runs.append(summary)
            log.info("explore %s: %d frames, max sigma_F %.3f eV/A%s", traj, summary["frames"],
                     summary["max_force_std"], "" if summary["stopped_at_step"] is None else
                     f" (stopped at step {summary['stopped_at_step']})")
    return frames, runs


def select(frames: Sequence[Atoms], lower: float, upper: float, max_per_iteration: int, min_gap: int) -> list[int]:
    """Indices of the frames to label: σ_F in [lower, upper], largest first (ties: trajectory and step order), no
    two within ``min_gap`` frames of one trajectory, at most ``max_per_iteration``."""
    band = [i for i, f in enumerate(frames) if lower <= f.info["max_force_std"] <= upper]
    band.sort(key=lambda i: (-frames[i].info["max_force_std"], frames[i].info["trajectory"], frames[i].info["step"]))
    chosen: list[int] = []
    for i in band:
        if len(chosen) >= max_per_iteration:
            break
        f = frames[i]
        if any(frames[j].info["trajectory"] == f.info["trajectory"]
               and abs(frames[j].info["step"] - f.info["step"]) < min_gap * int(f.info.get("interval", 1))
               for j in chosen):
            continue
        chosen.append(i)
    return sorted(chosen)


# ---------------------------------------------------------------- the loop
def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _write_frames(path: Path, frames: Sequence[Atoms]) -> None:
    atomic_write(path, lambda tmp: ase.io.write(str(tmp), list(frames), format="extxyz"))


def _member_metrics(model: Path) -> dict:
    """The final metrics ``mlpot.train`` wrote beside a member's model.pt ({} when absent)."""
    return _read_json(Path(model).parent / "metrics.json") or {}


def _mean_metrics(models: Sequence[Path]) -> dict:
    keys = ("val/energy_per_atom_rmse", "val/forces_rmse", "test/energy_per_atom_rmse", "test/forces_rmse")
    rows = [_member_metrics(m) for m in models]
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys if any(k in r for r in rows)}


def run_loop(cfg: Mapping, reference, out: Path) -> dict:
    """The loop of the module doc; returns the state written to ``out/active_learning.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sys_cfg, com, exp, sel, bud = cfg["system"], cfg["committee"], cfg["explore"], cfg["select"], cfg["budget"]
    element, crystal, a = sys_cfg["element"], sys_cfg["crystal"], float(sys_cfg["a"])
    lower, upper = float(sel["lower"]), float(sel["upper"])
    if not 0 <= lower < upper:
        raise SimulationConfigError(f"select: need 0 <= lower < upper, got lower={lower}, upper={upper}")
    if int(com["size"]) < 2:
        raise SimulationConfigError(f"committee.size: a committee needs at least 2 members, got {com['size']}")
    split = str(com.get("split", "same"))
    if split not in ("same", "different"):
        raise SimulationConfigError(f"committee.split: 'same' or 'different', got {split!r}")
    parallel = int(com.get("parallel", 1))
    if parallel < 1:
        raise SimulationConfigError(f"committee.parallel: members trained at once, at least 1, got {parallel}")
    retrain = com.get("retrain_factor")
    if retrain is not None and not float(retrain) > 1:
        raise SimulationConfigError(f"committee.retrain_factor: null or a number above 1, got {retrain}")
    seed = int(cfg.get("seed", 0))
    state_path = out / STATE
    state = _read_json(state_path) or {"iterations": [], "status": "running"}
    thresholds = {"lower": lower, "upper": upper, "max_per_iteration": int(sel["max_per_iteration"]),
                  "min_gap": int(sel["min_gap"])}

    first = out / "iter_000" / "labelled.extxyz"
    if not first.is_file():
        ini = cfg["initial"]
        if ini.get("path"):
            frames = ase.io.read(str(ini["path"]), index=":")
        else:
            frames = initial_frames(reference, element, crystal, a, ini["repeat"], int(ini["n_frames"]),
                                    float(ini["rattle"]), float(ini["strain"]), seed)
        _write_frames(first, frames)

    k = 0
    while True:
        it_dir = out / f"iter_{k:03d}"
        labelled = it_dir / "labelled.extxyz"
        n_labelled = len(ase.io.read(str(labelled), index=":"))
        record = next((r for r in state["iterations"] if r["iteration"] == k), None)
        if record is None:
            record = {"iteration": k, "n_labelled": n_labelled, "thresholds": thresholds}
            state["iterations"].append(record)
        seeds = [seed + 1000 * k + m for m in range(int(com["size"]))]
        split_seed = seed if split == "same" else None
        models = train_members(labelled, it_dir / "members", seeds, com.get("train", []), split_seed, parallel)
        if not (it_dir / "committee.pt").is_file():  # a committee already written keeps its members (resume)
            models, retrained = retrain_poor_members(models, labelled, it_dir / "members", seeds,
                                                     com.get("train", []), retrain, split_seed, parallel)
            if retrained:
                record["retrained"] = retrained
        else:
            models = [Path(m) for m in record.get("members", models)]
        com_file = write_committee(models, it_dir / "committee.pt")
        record.update(model=str(com_file), members=[str(m) for m in models], metrics=_mean_metrics(models))
        write_text(state_path, json.dumps(state, indent=2) + "\n")

        if k + 1 >= int(bud["iterations"]) or n_labelled >= int(bud["max_labelled"]):
            state["status"] = "budget"
            break
        cand_path, summ_path = it_dir / "candidates.extxyz", it_dir / "explore.json"
        if cand_path.is_file() and summ_path.is_file():
            frames = ase.io.read(str(cand_path), index=":")
            runs = _read_json(summ_path)
        else:
            calc = committee(com_file, com.get("dtype"))
            frames, runs = explore(calc, exp["structures"], exp["temperatures_K"], element=element, crystal=crystal,
                                   a=a, repeat=exp["repeat"], steps=int(exp["steps"]), interval=int(exp["interval"]),
                                   timestep_fs=float(exp["timestep_fs"]), upper=upper, seed=seed + 1000 * k)
            _write_frames(cand_path, frames)
            write_text(summ_path, json.dumps(runs, indent=2) + "\n")
        sigmas = np.array([f.info["max_force_std"] for f in frames])
        cap = min(int(sel["max_per_iteration"]), int(bud["max_labelled"]) - n_labelled)
        chosen = select(frames, lower, upper, cap, int(sel["min_gap"]))
        record.update(n_candidates=len(frames), n_above_lower=int((sigmas >= lower).sum()),
                      n_above_upper=int((sigmas > upper).sum()), max_force_std=float(sigmas.max()),
                      n_selected=len(chosen), selected=[f"{frames[i].info['trajectory']}@{frames[i].info['step']}"
                                                        for i in chosen])
        write_text(it_dir / "selected.json", json.dumps(record["selected"]) + "\n")
        if not (sigmas >= lower).any():
            state["status"] = "converged"
            break
        nxt = out / f"iter_{k + 1:03d}" / "labelled.extxyz"
        if not nxt.is_file():
            new = [label(frames[i], reference, f"active_{k}_{frames[i].info['trajectory']}") for i in chosen]
            _write_frames(nxt, list(ase.io.read(str(labelled), index=":")) + new)
        write_text(state_path, json.dumps(state, indent=2) + "\n")
        if not chosen:  # σ_F only above the band: nothing to learn from safely
            state["status"] = "stalled"
            break
        k += 1
    state["final_model"] = state["iterations"][-1]["model"]
    write_text(state_path, json.dumps(state, indent=2) + "\n")
    return state


__all__ = ["STATE", "committee", "write_committee", "explore", "exploration_structure", "initial_frames", "label", "run_loop", "select",
           "retrain_poor_members", "train_member", "train_members"]
