"""The LightningModule: loss terms, metrics, optimiser and scheduler."""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch

from mlpot.training.losses import ErrorAccumulator, LossWeights, errors, loss


class PotentialModule(pl.LightningModule):
    """Trains a :class:`~mlpot.Potential` on batches of either kind (``Potential.predict_batch``: frames, whose
    forces come from autograd with ``create_graph``, or stored descriptors and pair Jacobians).

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``):
    ``optimizer(params)`` and ``scheduler(optimizer)``.
    """

    def __init__(self, potential, loss_weights: LossWeights | dict | None = None, optimizer=None, scheduler=None,
                 monitor: str = "val/loss"):
        super().__init__()
        self.potential = potential
        self.weights = loss_weights if isinstance(loss_weights, LossWeights) else LossWeights(**(loss_weights or {}))
        self.optimizer_factory = optimizer or (lambda p: torch.optim.AdamW(p, lr=1e-3))
        self.scheduler_factory = scheduler
        self.monitor = monitor
        self.acc = {"train": ErrorAccumulator(), "val": ErrorAccumulator(), "test": ErrorAccumulator()}
        self.history: list[dict] = []
        self.test_results: dict = {}
        self.seconds_before = 0.0  # training seconds of the run before a resume (from the checkpoint)
        self._fit_t0: float | None = None

    # -- steps -----------------------------------------------------------------------------------
    def _step(self, batch, stage: str):
        training = stage == "train"
        with torch.enable_grad():
            pred = self.potential.predict_batch(batch, forces=True, stress=self.weights.needs_stress() or not training,
                                                create_graph=training, with_delta=training)
        err = errors(pred, batch)
        self.acc[stage].update(err)
        if training and "penalty" in pred:  # heads with a regulariser on their output (PINN: |δp|²)
            return loss(err, self.weights) + pred["penalty"]
        return loss(err, self.weights) if training else None

    def training_step(self, batch, batch_idx):
        value = self._step(batch, "train")
        self.log("train/loss_step", value.detach(), batch_size=int(batch["n_atoms"].shape[0]), prog_bar=True)
        return value

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    # -- epoch ends: exact metrics (sums all-reduced across processes) -----------------------------
    def _reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.trainer is not None and self.trainer.world_size > 1:
            return self.trainer.strategy.reduce(t.to(self.device), reduce_op="sum").cpu()
        return t

    def _finish(self, stage: str) -> dict:
        metrics = self.acc[stage].compute(self._reduce)
        self.acc[stage].reset()
        w = self.weights
        terms = {"energy_per_atom": w.energy, "forces": w.forces, "stress": w.stress, "atomic_energies": w.atomic_energies}
        metrics["loss"] = sum(v * metrics.get(f"{k}_rmse", 0.0) ** 2 for k, v in terms.items() if v > 0)
        return {f"{stage}/{k}": v for k, v in metrics.items()}

    # One history row per epoch, written when the training epoch ends: Lightning runs the epoch's validation
    # before that, so the row pairs this epoch's validation with this epoch's training metrics; callbacks add
    # to ``epoch_row`` in between (the SANNP schedule's stage).
    def on_train_epoch_start(self):
        self._epoch_t0 = time.perf_counter()
        self._val_seconds = 0.0
        self.epoch_row = {}

    def on_validation_epoch_start(self):
        self._val_t0 = time.perf_counter()

    def on_train_epoch_end(self):
        m = self._finish("train")
        if getattr(self, "_epoch_t0", None) is not None:  # the training epoch alone (no validation), for throughput
            m["train/epoch_seconds"] = time.perf_counter() - self._epoch_t0 - getattr(self, "_val_seconds", 0.0)
        self.log_dict({k: v for k, v in m.items() if not k.endswith("_count")}, sync_dist=False)
        self._last_train = m
        row = {"epoch": self.current_epoch, "lr": self.trainer.optimizers[0].param_groups[0]["lr"]}
        row.update(getattr(self, "epoch_row", {}))
        row.update(m)
        self.history.append(row)
        self.epoch_row = {}

    def on_validation_epoch_end(self):
        m = self._finish("val")
        self.log_dict({k: v for k, v in m.items() if not k.endswith("_count")}, sync_dist=False, prog_bar=False)
        if not self.trainer.sanity_checking:
            self.epoch_row = {**getattr(self, "epoch_row", {}), **m}
            self._val_seconds = getattr(self, "_val_seconds", 0.0) + time.perf_counter() - self._val_t0

    def on_test_epoch_end(self):
        m = self._finish("test")
        self.log_dict({k: v for k, v in m.items() if not k.endswith("_count")}, sync_dist=False)
        self.test_results = m

    # -- checkpoints: the whole run's history and time survive a resume --------------------------------
    def on_fit_start(self):
        self._fit_t0 = time.perf_counter()

    def train_seconds(self) -> float:
        """Training seconds of the whole run so far (the parts before a resume included)."""
        since = 0.0 if self._fit_t0 is None else time.perf_counter() - self._fit_t0
        return self.seconds_before + since

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        from mlpot.training.checkpoints import describe

        checkpoint["mlpot"] = {**describe(self.potential), "history": list(self.history),
                               "train_seconds": self.train_seconds()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("mlpot") or {}
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        if fitting and "history" in saved:  # resume: continue the run's history and clock (not when testing 'best')
            self.history = list(saved["history"])
            self.seconds_before = float(saved.get("train_seconds", 0.0))

    # -- optimisation -----------------------------------------------------------------------------
    def configure_optimizers(self):
        opt = self.optimizer_factory(self.potential.parameters())
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": self.monitor, "interval": "epoch"}}
