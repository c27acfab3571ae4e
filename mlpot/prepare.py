"""``mlpot-prepare``: convert data into stores ahead of training (no science here; see mlpot/data).

Takes the same overrides as ``mlpot-train`` and builds what that run would build on first use: the frame
store of ``data`` (keyed by the content of its sources, reused by every later run and sweep), the splits,
and, for the force path the run would take, the Jacobian store and the descriptor statistics. Prints a
summary of the data::

    mlpot-prepare data=xyz data.path=big.extxyz                  # frame store, then what training needs
    mlpot-prepare experiment=mlearn data.path=../shared/data/mlearn/Mo training.forces=jacobian
    mlpot-prepare data=xyz data.path=big.extxyz --frames-only     # the frame store alone
"""

from __future__ import annotations

import logging
import sys

import numpy as np

from mlpot.cli import app

log = logging.getLogger("mlpot.prepare")


def summary(dm) -> str:
    """A few lines on a data module's store and splits."""
    from ase.data import chemical_symbols

    store = dm.open_store()
    lines = [f"store: {store.path} ({store.path.stat().st_size / 1e6:.1f} MB)",
             f"frames: {len(store)}, atoms: {int(store.offsets[-1])}, from {len(store.sources)} file(s)"]
    comp = store.composition(store.elements).sum(0)
    lines.append("elements: " + ", ".join(f"{chemical_symbols[z]} {int(c)}" for z, c in zip(store.elements, comp)))
    lines.append("labels: " + ", ".join(f"{k} {int(store.has(k).sum())}" for k in
                                        ("energy", "forces", "stress", "atomic_energies")))
    if store.config_types:
        ids, counts = np.unique(store.meta()["config_type"], return_counts=True)
        names = [store.config_types[i] if i >= 0 else "(none)" for i in ids]
        shown = ", ".join(f"{n} {int(c)}" for n, c in zip(names, counts))
        lines.append(f"config_types ({len(names)}): {shown[:400]}")
    lines.append("splits: " + ", ".join(f"{k} {len(v)}" for k, v in dm.load().items()))
    return "\n".join(lines)


def prepare(cfg, frames_only: bool = False):
    """Build the stores a training run with ``cfg`` would build; returns the data module."""
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from mlpot.data.datamodule import choose_force_path
    from mlpot.train import DTYPES, _accelerator

    dm = instantiate(cfg.data)
    dm.load()
    print(summary(dm), flush=True)
    if frames_only:
        return dm
    with open_dict(cfg):
        cfg.elements = list(dm.elements)
    descriptor = instantiate(cfg.descriptor)
    dtype = DTYPES[cfg.dtype]
    training = cfg.get("training") or {}
    kind, why = choose_force_path(dm, descriptor, dtype, training.get("forces", "auto"), _accelerator(cfg),
                                  training.get("jacobian_budget_gb"))
    print(f"force path: {kind} ({why})", flush=True)
    dm.prepare(descriptor, dtype, kind)
    if dm.jstore is not None:
        print(f"Jacobian store: {dm.jstore.path} ({dm.jstore.nbytes() / 1e6:.1f} MB)", flush=True)
    dm.scaling_statistics(descriptor, dtype)
    return dm


def _main(argv=None) -> int:
    from hydra import compose, initialize_config_dir

    from mlpot.train import CONF_DIR

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    frames_only = "--frames-only" in args
    overrides = [a for a in args if a != "--frames-only"]
    from mlpot.system import tune_allocator

    tune_allocator()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    prepare(cfg, frames_only)
    return 0


main = app("mlpot-prepare")(_main)  # one line per error, exit status 2, as the other apps (mlpot.cli)


if __name__ == "__main__":
    sys.exit(main())
