"""``mlpot-active``: the active-learning loop of :mod:`mlpot.active.loop` as a Hydra app (config ``active.yaml``)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mlpot.cli import app
from mlpot.train import CONF_DIR

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    from mlpot.active.loop import STATE, run_loop
    from mlpot.md.runner import writable_dir

    out = writable_dir(cfg.output_dir, "active-learning folder")
    reference = instantiate(cfg.reference)
    c = OmegaConf.to_container(cfg, resolve=True)
    state = run_loop(c, reference, out)
    last = state["iterations"][-1]
    print(f"mlpot-active: {state['status']} after {len(state['iterations'])} iteration(s), {last['n_labelled']} "
          f"labelled frames; committee {last['model']}; log {Path(out) / STATE}", flush=True)
    return state


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="active")
@app("mlpot-active")
def main(cfg: DictConfig) -> None:
    from mlpot.system import setup_process

    setup_process(cfg.get("threads"))
    run(cfg)


if __name__ == "__main__":
    main()
