"""The SANNP staged schedule (docs/science.md §6): atomic energies first, then forces.

Stage 1 trains on the per-atom energies E_i alone. When the validation E_i RMSE has not improved
for ``patience`` validation epochs (or after ``stage1_epochs`` epochs), stage 2 starts: the loss
weights become the module's configured ones (``loss=sannp``: E_i plus forces and total energy).

``val/loss`` changes meaning at the switch, so at that moment the callback

* recomputes this epoch's ``val/loss`` with the stage-2 weights (every RMSE is measured in every
  stage, whatever the weights), so that what early stopping, checkpointing and the LR scheduler see
  from now on has one definition;
* resets early stopping (best score, wait count), the best checkpoint (its file is then overwritten
  by the first stage-2 save) and a ReduceLROnPlateau scheduler, and, with ``reset_lr``, puts the
  learning rate back to its starting value; an L-BFGS optimiser forgets its history (its curvature
  pairs and last gradient belong to the stage-1 objective).

The switch is printed as one line and logged as the metric ``stage`` (1 or 2, also in each
``history`` row); the stage and the plateau counters are saved in checkpoints, so a run resumed
from ``last.ckpt`` continues in the stage where it stopped.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info

from mlpot.training.losses import LossWeights


class StagedSchedule(pl.Callback):
    """Stage 1: ``stage1`` weights (default E_i only); stage 2: the module's configured weights.

    ``monitor``: the stage-1 plateau metric; ``patience``: validation epochs without an improvement
    larger than ``min_delta`` (relative) before the switch; ``stage1_epochs``: the switch at the latest
    (None: no limit); ``reset_lr``: restart stage 2 at the initial learning rate.
    """

    def __init__(self, patience: int = 10, stage1_epochs: int | None = None, min_delta: float = 0.0,
                 monitor: str = "val/atomic_energies_rmse", stage1: dict | None = None, reset_lr: bool = True,
                 verbose: bool = True):
        super().__init__()
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.stage1_epochs, self.min_delta = int(patience), stage1_epochs, float(min_delta)
        self.monitor, self.reset_lr, self.verbose = monitor, bool(reset_lr), verbose
        self.stage1 = LossWeights(**(stage1 or {"energy": 0.0, "forces": 0.0, "stress": 0.0, "atomic_energies": 1.0}))
        if self.stage1.atomic_energies <= 0:
            raise ValueError("the stage-1 weights must train the atomic energies (atomic_energies > 0)")
        self.stage = 1
        self.best = math.inf
        self.wait = 0
        self.switch_epoch: int | None = None
        self.initial_lr: list[float] | None = None
        self.stage2: LossWeights | None = None

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"stage": self.stage, "best": self.best, "wait": self.wait, "switch_epoch": self.switch_epoch,
                "initial_lr": self.initial_lr}

    def load_state_dict(self, state: dict) -> None:
        self.stage = int(state["stage"])
        self.best, self.wait = float(state["best"]), int(state["wait"])
        self.switch_epoch, self.initial_lr = state.get("switch_epoch"), state.get("initial_lr")

    # -- weights ----------------------------------------------------------------------------------
    def _apply(self, pl_module) -> None:
        if self.stage2 is None:  # the configured (final) weights, taken once from the module
            self.stage2 = LossWeights(**vars(pl_module.weights))
        pl_module.weights = LossWeights(**vars(self.stage1 if self.stage == 1 else self.stage2))

    def on_fit_start(self, trainer, pl_module) -> None:
        self._apply(pl_module)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.initial_lr is None and trainer.optimizers:
            self.initial_lr = [g["lr"] for g in trainer.optimizers[0].param_groups]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("stage", float(self.stage), on_epoch=True, on_step=False)

    # -- the switch -------------------------------------------------------------------------------
    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        pl_module.epoch_row = {**getattr(pl_module, "epoch_row", {}), "stage": self.stage}
        if self.stage != 1:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None:
            value = float(value)
            if value < self.best * (1.0 - self.min_delta):
                self.best, self.wait = value, 0
            else:
                self.wait += 1
        epochs_done = trainer.current_epoch + 1
        plateau = self.wait >= self.patience
        limit = self.stage1_epochs is not None and epochs_done >= int(self.stage1_epochs)
        if plateau or limit:
            self._switch(trainer, pl_module, "plateau" if plateau else "stage1_epochs")

    def _switch(self, trainer, pl_module, why: str) -> None:
        self.stage, self.switch_epoch = 2, trainer.current_epoch
        self._apply(pl_module)
        w = pl_module.weights
        metrics = trainer.callback_metrics
        terms = {"energy_per_atom": w.energy, "forces": w.forces, "stress": w.stress, "atomic_energies": w.atomic_energies}
        loss = sum(v * float(metrics[f"val/{k}_rmse"]) ** 2 for k, v in terms.items() if v > 0 and f"val/{k}_rmse" in metrics)
        metrics["val/loss"] = torch.tensor(loss)
        pl_module.epoch_row = {**getattr(pl_module, "epoch_row", {}), "val/loss_stage2": loss}
        for cb in trainer.callbacks:
            if isinstance(cb, EarlyStopping):
                cb.wait_count = 0
                cb.best_score = torch.tensor(math.inf if cb.monitor_op == torch.lt else -math.inf)
            elif isinstance(cb, ModelCheckpoint) and cb.monitor is not None:
                worst = torch.tensor(math.inf if cb.mode == "min" else -math.inf)
                path = cb.best_model_path
                cb.best_k_models = {path: worst} if path else {}
                cb.kth_best_model_path, cb.kth_value = path, worst
                cb.best_model_score = worst if path else None
        trainer.should_stop = False
        for config in trainer.lr_scheduler_configs:
            sched = config.scheduler
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.best, sched.num_bad_epochs, sched.cooldown_counter = sched.mode_worse, 0, 0
        if self.reset_lr and self.initial_lr and trainer.optimizers:
            for g, lr in zip(trainer.optimizers[0].param_groups, self.initial_lr):
                g["lr"] = lr
        for opt in trainer.optimizers:  # L-BFGS's curvature pairs belong to the stage-1 objective
            opt = getattr(opt, "optimizer", opt)
            if isinstance(opt, torch.optim.LBFGS):
                opt.state.clear()
        if self.verbose:
            rank_zero_info(f"SANNP schedule: epoch {trainer.current_epoch}: stage 1 -> 2 ({why}; best "
                           f"{self.monitor} {self.best:.6g}); loss weights now {vars(w)}")


__all__ = ["StagedSchedule"]
