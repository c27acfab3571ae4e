"""Logger factories."""

from __future__ import annotations

import os


def wandb_logger(save_dir, project: str = "mlpot", name=None, offline: bool | None = None, **kwargs):
    """Weights & Biases logger, offline when no API key is set (so it never needs the network)."""
    from pytorch_lightning.loggers import WandbLogger

    if offline is None:
        offline = not os.environ.get("WANDB_API_KEY")
    if offline:
        os.environ.setdefault("WANDB_MODE", "offline")
    return WandbLogger(save_dir=str(save_dir), project=project, name=name, offline=offline, **kwargs)
