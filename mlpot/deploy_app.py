"""``mlpot-deploy``: an exported ``model.pt`` as a file another engine runs (no science here; see mlpot.deploy and
mlpot.io.n2p2)::

    mlpot-deploy model=outputs/runs/<run>/model.pt out=model.lammps.pt      # LAMMPS pair_style mlpot (TorchScript)
    mlpot-deploy model=outputs/runs/<run>/model.pt out=cu_n2p2 format=n2p2  # n2p2's input.nn, scaling.data, weights
    mlpot-deploy model=... dtype=float32                                     # a float32 deployment

Keys (conf/deploy/deploy.yaml, its own config root: in conf/ itself `model=` would select the training's model
group): model, out, format (torchscript | n2p2), dtype (float32 | float64 | null), check.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mlpot.cli import app, compose_args

FORMATS = ("torchscript", "n2p2")


def deploy_model(cfg) -> Path:
    from mlpot.errors import ConfigError

    fmt = str(cfg.format).lower()
    if fmt not in FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(FORMATS)}, got {cfg.format!r}")
    model = Path(str(cfg.model))
    model_file = model / "model.pt" if model.is_dir() else model
    if fmt == "n2p2":
        from mlpot.export import read_info
        from mlpot.io.n2p2 import write

        if "committee" in read_info(model_file):
            raise ConfigError("format", f"{model_file} is a committee; n2p2 takes one network per element: write "
                                        "one member's model.pt (or use format=torchscript, which deploys the mean)")

        out = Path(cfg.out) if cfg.out else model_file.parent / "n2p2"
        write(model_file, out)
        return out
    from mlpot.deploy import deploy

    out = Path(cfg.out) if cfg.out else model_file.with_name(model_file.stem + ".lammps.pt")
    return deploy(model_file, out, dtype=cfg.dtype, check=bool(cfg.check))


def _main(argv=None) -> int:
    cfg = compose_args(argv, "deploy", "deploy", __doc__)
    if cfg is not None:
        print(deploy_model(cfg))
    return 0


main = app("mlpot-deploy")(_main)


if __name__ == "__main__":
    sys.exit(main())
