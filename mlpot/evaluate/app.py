"""``mlpot-evaluate``: the property suite on a model and a reference, compared (no science here)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mlpot.cli import CONF_DIR, app, rename_overrides
from mlpot.evaluate.crystal import resolve as resolve_crystal
from mlpot.evaluate.report import write_report
from mlpot.evaluate.suite import make_liquid, run_suite
from mlpot.md.calculators import TARGETS, calculator_config, make_calculator
from mlpot.md.runner import writable_dir

# the apps' one config root (conf/evaluate.yaml, its groups under conf/evaluate/); the name is kept for old imports
EVALUATE_CONF_DIR = CONF_DIR
#: old command-line spellings (mlpot <= 0.2, when evaluate had a config root of its own) -> today's
RENAMES = {"model": "potential", "suite": "evaluate/suite"}

log = logging.getLogger(__name__)


def _calculator(spec, dtype: str, key: str):
    """The ASE calculator of ``potential`` or ``reference`` (a shorthand or a ``_target_`` config); mlpot models
    (and n2p2 folders) are evaluated in ``dtype`` unless their config sets one."""
    conf = calculator_config(spec, key)
    if conf["_target_"] in (TARGETS["model"], TARGETS["committee"], TARGETS["n2p2"]) and conf.get("dtype") is None:
        conf["dtype"] = dtype
    return make_calculator(conf, key)


def _name(spec) -> str:
    """How the report names a potential: its path, or its config's _target_ class."""
    return str(spec) if not isinstance(spec, dict) else str(spec.get("path") or spec.get("_target_") or spec.get("kind"))


def run(cfg: DictConfig) -> dict:
    """Run the suite on ``cfg.potential`` and ``cfg.reference``; write results.json, report.md, PNGs."""
    c = OmegaConf.to_container(cfg, resolve=True)
    out = writable_dir(c["output_dir"], "report folder")
    model = _calculator(c["potential"], c.get("dtype", "float64"), "potential")
    reference = _calculator(c["reference"], c.get("dtype", "float64"), "reference")
    spec = c["potential"]
    model_path = spec.get("path") if isinstance(spec, dict) else spec
    suite, crystal_note = resolve_crystal(c["suite"], model_path)  # fills suite.element/crystal/a when auto
    t0 = time.perf_counter()
    liquid = make_liquid(suite, reference)  # one melt, shared, so that only the potential differs
    ref_name = _name(c["reference"])
    ref_scalars, ref_curves = run_suite(reference, suite, liquid, name="reference")
    model_scalars, model_curves = run_suite(model, suite, liquid, name="model")
    notes = [crystal_note, "", f"Suite settings: `{json.dumps(suite)}`", "",
             f"Wall time {time.perf_counter() - t0:.0f} s; per section (s): model "
             f"{ {k: round(v) for k, v in model_curves['timings_s'].items()} }, reference "
             f"{ {k: round(v) for k, v in ref_curves['timings_s'].items()} }."]
    table = write_report(out, model_scalars, ref_scalars, {"model": model_curves, ref_name: ref_curves},
                         _name(c["potential"]), ref_name, notes)
    (out / "curves.json").write_text(json.dumps({"model": model_curves, "reference": ref_curves}) + "\n")
    log.info("report written to %s", Path(out) / "report.md")
    return table


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
@app("mlpot-evaluate")
def _main(cfg: DictConfig) -> None:
    from mlpot.system import setup_process

    setup_process(cfg.get("threads"))
    run(cfg)


def main() -> None:
    """The ``mlpot-evaluate`` command (the old spellings ``model=`` and ``suite=`` renamed first)."""
    sys.argv[1:] = rename_overrides(sys.argv[1:], RENAMES)
    _main()


if __name__ == "__main__":
    main()
