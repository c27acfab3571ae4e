"""Test error against training wall time: the :class:`TestCurve` callback (``callbacks=test_curve``).

Every ``every_n_epochs`` epochs and once more at the end of training, the model (in eval mode, rank 0
only) predicts the test split of the datamodule (all of it, read batch by batch from disk), and a
row {epoch, wall_seconds, test energy-per-atom and force RMSE/MAE} is written to
``<run_dir>/test_curve.csv``. ``wall_seconds`` is the training time since fit start *without* the time
spent in these evaluations; with ``exclude_from_max_time`` the same time is also taken off Lightning's
``trainer.max_time`` budget, so that a time budget buys the same training whatever the evaluation
interval. The test set is never used for training decisions (checkpoints, early stopping and the LR
schedule watch validation); the curve is only a measurement. Works with automatic (AdamW) and manual
(EKF, L-BFGS) optimisation, and the rows survive a checkpoint resume (callback state).
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from mlpot.files import atomic_write
from mlpot.training.losses import ErrorAccumulator, errors

COLUMNS = ("epoch", "wall_seconds", "energy_per_atom_rmse", "energy_per_atom_mae", "forces_rmse", "forces_mae",
           "eval_seconds")


def evaluate_batches(potential, batches, device=None) -> dict[str, float]:
    """RMSE and MAE (``<quantity>_rmse``, ``<quantity>_mae``, ``<quantity>_count``) over batches (either kind).

    Energies and forces come from one pass of ``Potential.predict_batch``: it differentiates the energy with
    respect to the positions or descriptors (autograd on, as it needs), never with respect to the weights,
    so no parameter gradient is touched and no graph is kept.
    """
    from lightning_fabric.utilities.apply_func import move_data_to_device

    acc = ErrorAccumulator()
    for batch in batches:
        if device is not None:
            batch = move_data_to_device(batch, device)
        with torch.enable_grad():
            pred = potential.predict_batch(batch, forces=True)
        acc.update(errors({key: v.detach() for key, v in pred.items()}, batch))
    return acc.compute() if acc.sums else {}


class TestCurve(pl.Callback):
    """Test errors against training wall time, written to a CSV (see the module docstring).

    ``path``: the CSV (default ``<trainer.default_root_dir>/test_curve.csv``, the run folder under
    ``mlpot-train``); ``every_n_epochs``: evaluation interval (0: only at the end); ``at_start``: also a row
    for the initial weights (epoch 0, 0 s); ``batch_size``: test structures per forward pass.
    """

    __test__ = False  # not a pytest class despite its name

    def __init__(self, path: str | os.PathLike | None = None, every_n_epochs: int = 1, at_start: bool = False,
                 batch_size: int = 32, exclude_from_max_time: bool = True):
        if every_n_epochs < 0 or batch_size < 1:
            raise ValueError("TestCurve: every_n_epochs must be >= 0 and batch_size >= 1")
        self.path = None if path in (None, "") else Path(path)
        self.every_n_epochs, self.at_start, self.batch_size = int(every_n_epochs), bool(at_start), int(batch_size)
        self.exclude_from_max_time = bool(exclude_from_max_time)
        self.rows: list[dict] = []
        self._offset = 0.0          # training seconds before this fit (resume)
        self._t0: float | None = None
        self._eval_seconds = 0.0    # spent in this callback since fit start
        self._batches_since = 0     # training batches since the last row

    # -- timing -------------------------------------------------------------------------------------
    def wall_seconds(self) -> float:
        """Training seconds so far, without this callback's evaluations."""
        if self._t0 is None:
            return self._offset
        return self._offset + time.perf_counter() - self._t0 - self._eval_seconds

    def on_fit_start(self, trainer, pl_module):
        self._t0, self._eval_seconds, self._batches_since = time.perf_counter(), 0.0, 0
        if self.path is None:
            self.path = Path(trainer.default_root_dir) / "test_curve.csv"

    # -- hooks ----------------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module):
        if self.at_start and not self.rows:
            self._record(trainer, pl_module, epoch=0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._batches_since += 1

    def on_train_epoch_end(self, trainer, pl_module):
        epoch = trainer.current_epoch + 1  # epochs completed
        if self.every_n_epochs and epoch % self.every_n_epochs == 0:
            self._record(trainer, pl_module, epoch)

    def on_train_end(self, trainer, pl_module):
        if self._batches_since or not self.rows:  # weights changed since the last row (or no row yet)
            self._record(trainer, pl_module, trainer.current_epoch)

    # -- evaluation -----------------------------------------------------------------------------------
    def _batches(self, trainer):
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "loader"):
            raise ValueError("TestCurve needs mlpot's AtomsDataModule (its test split, read batch by batch)")
        return dm.loader("test", batch_size=self.batch_size, rank=0, world=1)

    def _record(self, trainer, pl_module, epoch: int) -> None:
        wall = self.wall_seconds()
        start = time.perf_counter()
        if trainer.is_global_zero:
            potential = pl_module.potential
            was_training = potential.training
            potential.eval()
            try:
                m = evaluate_batches(potential, self._batches(trainer), pl_module.device)
            finally:
                potential.train(was_training)
            row = {"epoch": int(epoch), "wall_seconds": wall}
            row.update({k: m.get(k, float("nan")) for k in COLUMNS[2:-1]})
            row["eval_seconds"] = time.perf_counter() - start
            self.rows.append(row)
            self.write()
        spent = time.perf_counter() - start
        self._eval_seconds += spent
        self._batches_since = 0
        if self.exclude_from_max_time:
            timer = next((cb for cb in trainer.callbacks if isinstance(cb, pl.callbacks.Timer)), None)
            if timer is not None and hasattr(timer, "_offset"):
                timer._offset -= spent  # Lightning's max_time counts training only, like wall_seconds

    def write(self) -> None:
        """Rewrite the whole CSV (atomically: a temporary file, then a rename)."""
        if self.path is None:
            return

        def write(tmp):
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
                w.writeheader()
                for row in self.rows:
                    w.writerow({k: (f"{v:.6f}" if k.endswith("seconds") else
                                    v if k == "epoch" else f"{v:.8g}") for k, v in row.items()})

        atomic_write(self.path, write)

    # -- checkpoint state (exact resume of the curve) -------------------------------------------------
    def state_dict(self) -> dict:
        return {"rows": [dict(r) for r in self.rows], "wall_seconds": self.wall_seconds()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]
        self._offset = float(state_dict.get("wall_seconds", 0.0))


def read_curve(path) -> list[dict]:
    """Rows of a ``test_curve.csv`` as dicts of floats (``epoch`` as int)."""
    with open(path, newline="") as fh:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v not in (None, "")}
                for row in csv.DictReader(fh)]


__all__ = ["TestCurve", "evaluate_batches", "read_curve", "COLUMNS"]
