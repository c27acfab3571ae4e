"""L-BFGS training (``optim=lbfgs``): torch.optim.LBFGS driven from Lightning by manual optimisation.

L-BFGS evaluates the loss several times per step (its strong-Wolfe line search calls the closure at trial
weights), so the automatic loop would count every trial evaluation in the training metrics and clip the
gradients that the line search compares. Only the closure's first evaluation (at the weights before the step)
enters the training metrics, and nothing is clipped (``mlpot.train`` switches clipping off for manual
optimisation).

Full batch over data read in batches: L-BFGS's curvature pairs only make sense for a fixed objective, so with
mlpot's data module (``full_split``) an epoch is one step on the whole training split, whatever its size. Every
evaluation reads the split batch by batch (``data.batch_size`` frames each; ``AtomsDataModule.split_batches``,
kept in memory when they fit ``data.keep_in_memory_gb``), adds each batch's part of
Σ_k w_k Σ err² / N_k (N_k counted over the split) and backpropagates it at once, so that memory is one
batch's while the objective and gradient are those of the split as one batch (``tests/test_lbfgs.py``: the
same steps to 1e-10). Given a plain loader instead (scripts), each of its batches is one step.

When a step leaves the weights unchanged (the line search found no decrease along the quasi-Newton
direction), the optimiser's history is dropped so that the next epoch starts from steepest descent
(``restart_if_stalled``; counted in ``train/lbfgs_restarts``) instead of stalling the same way every epoch.

An optional warm start runs ``warmup_epochs`` epochs of Adam (``warmup_lr``) on the same batches before L-BFGS
takes over, which moves the weights out of the flat region of a random start.

``weight_decay`` adds λ Σ w² over the weight matrices (not the biases) to the objective that L-BFGS minimises
(torch's L-BFGS has no weight decay of its own). It regularises fits to small, strongly correlated data sets
(a few hundred MD frames), where the unregularised fit drives the training force error far below the test
error. The reported training loss stays the data loss.
"""

from __future__ import annotations

import copy

import torch
from pytorch_lightning.utilities import rank_zero_warn

from mlpot.training.losses import errors, loss
from mlpot.training.module import PotentialModule


def restart_if_stalled(opt, before: list, params: list) -> bool:
    """Drop an L-BFGS optimiser's history when its step left the weights exactly as they were.

    torch's L-BFGS ends a step without moving when the line search finds no decrease along the
    quasi-Newton direction (in float32 near a minimum, or after the objective changed); it then keeps
    the same curvature pairs, so every later epoch stalls the same way. Without history the next step
    starts from steepest descent. Returns whether the history was dropped."""
    if not isinstance(opt, torch.optim.LBFGS) or not opt.state:
        return False
    if any(not torch.equal(b, p.detach()) for b, p in zip(before, params)):
        return False
    opt.state.clear()
    return True


class LBFGSModule(PotentialModule):
    """A :class:`PotentialModule` whose training step is one ``torch.optim.LBFGS.step`` (manual optimisation)."""

    def __init__(self, *args, warmup_epochs: int = 0, warmup_lr: float = 1e-3, weight_decay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if weight_decay < 0:
            raise ValueError(f"optim.module.weight_decay must be >= 0, got {weight_decay}")
        self.weight_decay = float(weight_decay)
        if self.scheduler_factory is not None:
            raise ValueError("optim=lbfgs takes no learning-rate scheduler (set optim.scheduler=null)")
        self.automatic_optimization = False
        self.full_split = True  # the data module serves one step per epoch; the closure sums the whole split
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_lr = float(warmup_lr)
        self.n_evaluations = 0  # loss evaluations (closure calls) so far, for reporting
        self.n_restarts = 0  # epochs whose L-BFGS step left the weights unchanged (history then dropped)
        self._warned = False

    def on_fit_start(self):
        super().on_fit_start()
        if self.trainer.world_size > 1:  # the line search compares this process's loss values only
            raise ValueError("optim=lbfgs runs in a single process (trainer=cpu or gpu), not under DDP")

    def l2_norm(self) -> torch.Tensor:
        """Σ w² over the trainable weight matrices (parameters with two or more dimensions)."""
        return sum((p**2).sum() for p in self.potential.parameters() if p.requires_grad and p.ndim >= 2)

    def configure_optimizers(self):
        opt = self.optimizer_factory(self.potential.parameters())
        if self.warmup_epochs > 0:
            return [opt, torch.optim.Adam(self.potential.parameters(), lr=self.warmup_lr)]
        return opt

    def _split_closure_pass(self, opt, record: bool):
        """One evaluation of the full training objective and its gradient, batch by batch: each batch adds its
        part of Σ_k w_k Σ err² / N_k (N_k over the whole split) and backpropagates it, so that memory is one
        batch's while the loss and gradient are those of the split as one batch."""
        from lightning_fabric.utilities.apply_func import move_data_to_device

        dm = self.trainer.datamodule
        counts = self._counts
        total = None
        for batch in dm.split_batches("train"):
            batch = move_data_to_device(batch, self.device)
            with torch.enable_grad():
                pred = self.potential.predict_batch(batch, forces=True, stress=self.weights.needs_stress(),
                                                    create_graph=True, with_delta=True)
            err = errors(pred, batch)
            if record:
                self.acc["train"].update(err)
            part = loss(err, self.weights, counts)
            if "penalty" in pred:  # the head's regulariser, a mean over the split's atoms
                part = part + pred["penalty"] * (batch["n_atoms"].sum() / counts["atoms"])
            if part.requires_grad:
                self.manual_backward(part)
            part = part.detach().to(self.device)
            total = part if total is None else total + part
        return total if total is not None else torch.zeros((), device=self.device)

    def training_step(self, batch, batch_idx):
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        warm = self.current_epoch < self.warmup_epochs
        opt = opts[1] if warm else opts[0]
        first: dict = {}
        streamed = "full_split" in batch  # the data module serves one step per epoch; the closure reads the split
        if streamed and not hasattr(self, "_counts"):
            dm = self.trainer.datamodule
            self._counts = {**dm.label_counts("train"), "atoms": int(dm.open_store().n_atoms[dm.splits["train"]].sum())}
        elif not streamed and not self._warned and self.trainer.num_training_batches > 1:
            rank_zero_warn(f"L-BFGS on {self.trainer.num_training_batches} batches per epoch: each batch is a step")
            self._warned = True

        def closure():
            opt.zero_grad()
            if streamed:
                value = self._split_closure_pass(opt, record=not first)  # backpropagates batch by batch
            else:
                value = self._step(batch, "train")
                self.manual_backward(value)
                value = value.detach()
            if not first:  # the training metrics are those at the weights before the step
                first["loss"] = value
                first["sums"] = copy.deepcopy(self.acc["train"].sums)
            if self.weight_decay > 0:
                l2 = self.weight_decay * self.l2_norm()
                self.manual_backward(l2)
                value = value + l2.detach()
            self.n_evaluations += 1
            return value

        params = [p for p in self.potential.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in params]
        if streamed:
            self.acc["train"].reset()
        opt.step(closure)
        if not warm and restart_if_stalled(getattr(opt, "optimizer", opt), before, params):
            self.n_restarts += 1
            self.log("train/lbfgs_restarts", float(self.n_restarts), batch_size=1)
        if not streamed:
            self.acc["train"].sums = first["sums"]
        self.log("train/loss_step", first["loss"], batch_size=1, prog_bar=True)
        self.log("train/evaluations", float(self.n_evaluations), batch_size=1)
