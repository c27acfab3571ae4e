"""Crystal growth from the melt, EMT Cu and an ML model side by side (preset md/experiment=growth_cu).

    python scripts/growth_cu.py [--model outputs/runs/<run>/model.pt] [--out outputs/growth] [overrides ...]

Runs ``mlpot-md md/experiment=growth_cu`` with EMT (and the model, when given), then the crystalline
fraction (OVITO's adaptive CNA, fcc + hcp + bcc + diamond) of the free (non-seed) atoms in every frame; writes
growth.json (fractions, times to 90 %) and growth.png. Extra arguments are Hydra overrides for both runs
(e.g. ``steps=2000 structure.repeat=[3,3,6]``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import ase.io
import numpy as np
from hydra import compose, initialize_config_dir

from mlpot.evaluate.structure import crystalline_fraction, time_to_fraction
from mlpot.md.app import run
from mlpot.train import CONF_DIR


def one(name: str, out: Path, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("md", overrides=["md/experiment=growth_cu", f"output_dir={out / name}", *overrides])
    run(cfg)
    frames = ase.io.read(out / name / cfg.trajectory, index=":")
    free = np.ones(len(frames[0]), dtype=bool)
    for c in frames[0].constraints:
        free[c.get_indices()] = False
    f = crystalline_fraction(frames, mask=free)
    times = [float(fr.info["time_ps"]) for fr in frames]
    return {"time_ps": times, **f, "t90_ps": time_to_fraction(times, f["crystalline"], 0.9),
            "final": f["crystalline"][-1]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--out", default="outputs/growth")
    args, overrides = p.parse_known_args(argv)
    out = Path(args.out)
    results = {"emt": one("emt", out, overrides)}
    if args.model:
        results["model"] = one("model", out, ["md/calculator=model", f"calculator.path={args.model}", *overrides])
    (out / "growth.json").write_text(json.dumps(results, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.5), sharey=True, squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        ax.plot(r["time_ps"], r["crystalline"], label="crystalline (fcc + hcp + bcc)")
        ax.plot(r["time_ps"], r["fcc"], "--", label="fcc")
        ax.axhline(0.9, color="grey", lw=0.8)
        ax.set_title(f"{name}: t(90 %) = {r['t90_ps']} ps")
        ax.set_xlabel("time (ps)")
        ax.legend()
    axes[0][0].set_ylabel("crystalline fraction of free atoms")
    fig.tight_layout()
    fig.savefig(out / "growth.png", dpi=120)
    for name, r in results.items():
        print(f"{name}: final crystalline fraction {r['final']:.3f}, t(90 %) = {r['t90_ps']} ps")


if __name__ == "__main__":
    main()
