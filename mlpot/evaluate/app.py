"""``mlpot-evaluate``: the property suite on a model and a reference, compared (no science here)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mlpot.cli import app
from mlpot.evaluate.crystal import resolve as resolve_crystal
from mlpot.evaluate.report import write_report
from mlpot.evaluate.suite import make_liquid, run_suite
from mlpot.md.calculators import make_calculator
from mlpot.md.runner import writable_dir
from mlpot.train import CONF_DIR

# its own config root: in conf/ itself, `model=` would select the training's model group
EVALUATE_CONF_DIR = str(Path(CONF_DIR) / "evaluate")

log = logging.getLogger(__name__)


def _calculator(spec, dtype: str):
    if isinstance(spec, str) and spec.lower() == "emt":
        return make_calculator("emt")
    if isinstance(spec, str) and spec.endswith((".alloy", ".fs", ".eam", ".adp")):
        return make_calculator({"kind": "eam", "path": spec})
    if isinstance(spec, dict):
        return make_calculator(spec)
    return make_calculator({"kind": "model", "path": spec, "dtype": dtype})


def run(cfg: DictConfig) -> dict:
    """Run the suite on ``cfg.model`` and ``cfg.reference``; write results.json, report.md, PNGs."""
    c = OmegaConf.to_container(cfg, resolve=True)
    out = writable_dir(c["output_dir"], "report folder")
    model = _calculator(c["model"], c.get("dtype", "float64"))
    reference = _calculator(c["reference"], c.get("dtype", "float64"))
    suite, crystal_note = resolve_crystal(c["suite"], c["model"])  # fills suite.element/crystal/a when auto
    t0 = time.perf_counter()
    liquid = make_liquid(suite, reference)  # one melt, shared, so that only the potential differs
    ref_name = str(c["reference"]) if not isinstance(c["reference"], dict) else c["reference"].get("kind")
    ref_scalars, ref_curves = run_suite(reference, suite, liquid, name="reference")
    model_scalars, model_curves = run_suite(model, suite, liquid, name="model")
    notes = [crystal_note, "", f"Suite settings: `{json.dumps(suite)}`", "",
             f"Wall time {time.perf_counter() - t0:.0f} s; per section (s): model "
             f"{ {k: round(v) for k, v in model_curves['timings_s'].items()} }, reference "
             f"{ {k: round(v) for k, v in ref_curves['timings_s'].items()} }."]
    table = write_report(out, model_scalars, ref_scalars, {"model": model_curves, ref_name: ref_curves},
                         str(c["model"]), ref_name, notes)
    (out / "curves.json").write_text(json.dumps({"model": model_curves, "reference": ref_curves}) + "\n")
    log.info("report written to %s", Path(out) / "report.md")
    return table


@hydra.main(version_base="1.3", config_path=EVALUATE_CONF_DIR, config_name="evaluate")
@app("mlpot-evaluate")
def main(cfg: DictConfig) -> None:
    from mlpot.system import set_threads

    set_threads(cfg.get("threads"))
    run(cfg)


if __name__ == "__main__":
    main()
