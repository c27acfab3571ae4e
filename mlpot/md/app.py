"""``mlpot-md``: the Hydra app for one MD run (no science here; see :mod:`mlpot.md.runner`)."""

from __future__ import annotations

import json
import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from mlpot.cli import app
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
    stop = c.get("stop") or {}
    ens = dict(c["ensemble"])
    summary = run_md(atoms, calc, output_dir=out, ensemble=ens.pop("kind"), steps=c["steps"],
                     timestep_fs=c["timestep_fs"], temperature_K=c["temperature_K"],
                     init_velocities=c["init_velocities"], seed=c["seed"], interval=c["interval"],
                     trajectory=c["trajectory"], thermo=c["thermo"], restart=c["restart"], progress=c["progress"],
                     ensemble_options=ens, **stop)
    summary.pop("atoms")
    summary["n_fixed"] = int(fixed.sum())
    (out / "md_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("MD done: %d steps, %.1f steps/s, trajectory %s", summary["steps"], summary["steps_per_s"],
             summary["trajectory"])
    return summary


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="md")
@app("mlpot-md")
def main(cfg: DictConfig) -> None:
    from mlpot.system import set_threads

    set_threads(cfg.get("threads"))
    run(cfg)


if __name__ == "__main__":
    main()
