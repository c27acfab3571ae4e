"""``mlpot-md``: the Hydra app for one MD run (no science here; see :mod:`mlpot.md.runner`)."""

from __future__ import annotations

import json
import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from mlpot.cli import app
from mlpot.errors import SimulationConfigError
from mlpot.md.calculators import TARGETS, calculator_config, check_elements, make_calculator
from mlpot.md.ensembles import make_ensemble
from mlpot.md.runner import check_positive, run_md, writable_dir
from mlpot.md.structures import fix_atoms, make_structure, melt, structure_config
from mlpot.train import CONF_DIR

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Build calculator, structure and ensemble from ``cfg`` (``_target_`` configs, or the shorthands and the old
    ``kind:`` form, :mod:`mlpot.md.calculators`), run the MD, write ``md_summary.json``."""
    c = OmegaConf.to_container(cfg, resolve=True)
    check_positive(timestep_fs=c["timestep_fs"])
    ensemble = make_ensemble(c["ensemble"])
    if ensemble.name != "nve" or c["init_velocities"]:
        check_positive(temperature_K=c["temperature_K"])
    out = writable_dir(c["output_dir"], "trajectory folder")
    calc = make_calculator(c["calculator"])
    structure = structure_config(c["structure"])
    atoms = make_structure(structure)
    check_elements(atoms, calc, source=f"structure ({structure.get('path') or structure['_target_']})")
    fixed = fix_atoms(atoms, c.get("fix"))  # before melting: a fixed crystalline seed stays crystalline
    if structure.get("melt") is not None and not c["restart"]:
        melt(atoms, calc, temperature_K=c["temperature_K"], seed=c["seed"], **structure["melt"])
    engine = str(c.get("engine", "ase")).lower()
    if engine == "lammps":
        return run_in_lammps(c, atoms, out, fixed, calc, ensemble)
    if engine != "ase":
        raise SimulationConfigError(f"engine must be ase or lammps, got {c.get('engine')!r}")
    stop = c.get("stop") or {}
    summary = run_md(atoms, calc, output_dir=out, ensemble=ensemble.name, steps=c["steps"],
                     timestep_fs=c["timestep_fs"], temperature_K=c["temperature_K"],
                     init_velocities=c["init_velocities"], seed=c["seed"], interval=c["interval"],
                     trajectory=c["trajectory"], thermo=c["thermo"], restart=c["restart"], progress=c["progress"],
                     ensemble_options=ensemble.options, collect=c.get("collect"), **stop)
    summary.pop("atoms")
    summary["n_fixed"] = int(fixed.sum())
    (out / "md_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("MD done: %d steps, %.1f steps/s, trajectory %s", summary["steps"], summary["steps_per_s"],
             summary["trajectory"])
    return summary


def run_in_lammps(c: dict, atoms, out, fixed, calculator, ensemble) -> dict:
    """The same run in LAMMPS: the model deployed beside the trajectory, the input written for the user
    (``calculator``: the run's ASE calculator, built from the same config; its elements are the atom types)."""
    import numpy as np

    from mlpot.md.lammps import run_md_lammps
    from mlpot.md.runner import thermalize

    if fixed.any():
        raise SimulationConfigError("engine=lammps: fixed atoms (fix=...) are not written to LAMMPS yet; use engine=ase")
    if c["restart"]:
        raise SimulationConfigError("engine=lammps: restart is not supported; use LAMMPS's read_restart in in.lammps")
    calc = calculator_config(c["calculator"])
    target = calc["_target_"]
    if target == TARGETS["model"]:
        from mlpot.deploy import deploy

        path = deploy(calc["path"], out / "model.lammps.pt", dtype=calc.get("dtype"))
        model, types = {"kind": "deployed", "path": path}, list(calculator.elements)
    elif target == TARGETS["eam"]:
        model, types = {"kind": "eam", "path": calc["path"]}, sorted(set(atoms.get_chemical_symbols()))
    else:
        raise SimulationConfigError(f"engine=lammps runs mlpot models (mlpot.md.calculators.model) and EAM files "
                                    f"(mlpot.md.calculators.eam), not calculator {calc['_target_']}")
    if c["init_velocities"]:  # ASE's draw, as the ASE engine makes it: both engines start from the same state
        thermalize(atoms, c["temperature_K"], np.random.default_rng(c["seed"]))
    lmp = dict(c.get("lammps") or {})
    summary = run_md_lammps(atoms, model, types, output_dir=out, ensemble=ensemble.name, steps=c["steps"],
                            timestep_fs=c["timestep_fs"], temperature_K=c["temperature_K"], init_velocities=False,
                            seed=c["seed"], interval=c["interval"], ranks=lmp.get("ranks", 1),
                            threads=lmp.get("threads", 1), plugin=lmp.get("plugin"), ensemble_options=ensemble.options,
                            thermo=c["thermo"])
    (out / "md_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("LAMMPS MD done: %d steps on %d rank(s), %.1f steps/s; input %s", summary["steps"], summary["ranks"],
             summary["steps_per_s"], summary["input"])
    return summary


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="md")
@app("mlpot-md")
def main(cfg: DictConfig) -> None:
    from mlpot.system import setup_process

    setup_process(cfg.get("threads"))
    run(cfg)


if __name__ == "__main__":
    main()
