"""``mlpot-md``: the Hydra app for one MD run (no science here; see :mod:`mlpot.md.runner`)."""

from __future__ import annotations

import json
import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from mlpot.cli import app
from mlpot.errors import SimulationConfigError
from mlpot.md.calculators import check_elements, make_calculator
from mlpot.md.runner import check_positive, run_md, writable_dir
from mlpot.md.structures import fix_atoms, make_structure, melt
from mlpot.train import CONF_DIR

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Build calculator and structure from ``cfg``, run the MD, write ``md_summary.json``."""
    c = OmegaConf.to_container(cfg, resolve=True)
    check_positive(timestep_fs=c["timestep_fs"])
    if c["ensemble"]["kind"] != "nve" or c["init_velocities"]:
        check_positive(temperature_K=c["temperature_K"])
    out = writable_dir(c["output_dir"], "trajectory folder")
    calc = make_calculator(c["calculator"])
    structure = c["structure"]
    atoms = make_structure(structure)
    check_elements(atoms, calc, source=f"structure ({structure.get('path') or structure.get('kind')})")
    fixed = fix_atoms(atoms, c.get("fix"))  # before melting: a fixed crystalline seed stays crystalline
    if structure.get("kind") == "liquid" and not c["restart"]:
        melt(atoms, calc, temperature_K=c["temperature_K"], seed=c["seed"], **structure.get("melt", {}))
    engine = str(c.get("engine", "ase")).lower()
    if engine == "lammps":
        return run_in_lammps(c, atoms, out, fixed, calc)
    if engine != "ase":
        raise SimulationConfigError(f"engine must be ase or lammps, got {c.get('engine')!r}")
    stop = c.get("stop") or {}
    ens = dict(c["ensemble"])
    summary = run_md(atoms, calc, output_dir=out, ensemble=ens.pop("kind"), steps=c["steps"],
                     timestep_fs=c["timestep_fs"], temperature_K=c["temperature_K"],
                     init_velocities=c["init_velocities"], seed=c["seed"], interval=c["interval"],
                     trajectory=c["trajectory"], thermo=c["thermo"], restart=c["restart"], progress=c["progress"],
                     ensemble_options=ens, collect=c.get("collect"), **stop)
    summary.pop("atoms")
    summary["n_fixed"] = int(fixed.sum())
    (out / "md_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("MD done: %d steps, %.1f steps/s, trajectory %s", summary["steps"], summary["steps_per_s"],
             summary["trajectory"])
    return summary


def run_in_lammps(c: dict, atoms, out, fixed, calculator) -> dict:
    """The same run in LAMMPS: the model deployed beside the trajectory, the input written for the user
    (``calculator``: the run's ASE calculator, built from the same config; its elements are the atom types)."""
    import numpy as np

    from mlpot.md.lammps import run_md_lammps
    from mlpot.md.runner import thermalize

    if fixed.any():
        raise SimulationConfigError("engine=lammps: fixed atoms (fix=...) are not written to LAMMPS yet; use engine=ase")
    if c["restart"]:
        raise SimulationConfigError("engine=lammps: restart is not supported; use LAMMPS's read_restart in in.lammps")
    calc = dict(c["calculator"])
    kind = str(calc.get("kind")).lower()
    if kind == "model":
        from mlpot.deploy import deploy

        path = deploy(calc["path"], out / "model.lammps.pt", dtype=calc.get("dtype"))
        model, types = {"kind": "deployed", "path": path}, list(calculator.elements)
    elif kind == "eam":
        model, types = {"kind": "eam", "path": calc["path"]}, sorted(set(atoms.get_chemical_symbols()))
    else:
        raise SimulationConfigError(f"engine=lammps runs mlpot models and EAM files, not calculator kind {kind!r}")
    if c["init_velocities"]:  # ASE's draw, as the ASE engine makes it: both engines start from the same state
        thermalize(atoms, c["temperature_K"], np.random.default_rng(c["seed"]))
    ens = dict(c["ensemble"])
    lmp = dict(c.get("lammps") or {})
    summary = run_md_lammps(atoms, model, types, output_dir=out, ensemble=ens.pop("kind"), steps=c["steps"],
                            timestep_fs=c["timestep_fs"], temperature_K=c["temperature_K"], init_velocities=False,
                            seed=c["seed"], interval=c["interval"], ranks=lmp.get("ranks", 1),
                            threads=lmp.get("threads", 1), plugin=lmp.get("plugin"), ensemble_options=ens,
                            thermo=c["thermo"])
    (out / "md_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("LAMMPS MD done: %d steps on %d rank(s), %.1f steps/s; input %s", summary["steps"], summary["ranks"],
             summary["steps_per_s"], summary["input"])
    return summary


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="md")
@app("mlpot-md")
def main(cfg: DictConfig) -> None:
    from mlpot.system import set_threads, tune_allocator

    set_threads(cfg.get("threads"))
    tune_allocator()
    run(cfg)


if __name__ == "__main__":
    main()
