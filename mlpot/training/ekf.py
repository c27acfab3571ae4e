"""The global extended Kalman filter of n2p2/RuNNer (docs/science.md §8) as a torch optimiser, and the
LightningModule that drives it (manual optimisation).

For a set of m "patterns" (energies per atom, or force components) with errors ξ = y_ref − y and
derivatives H = ∂y/∂w (n_w × m):

    X = P H,  A = Hᵀ X + I/η,  K = X A⁻¹,  w ← w + K ξ,  P ← P − K Xᵀ + q I

with P₀ = I/ε, and per epoch t: η = min(η₀ e^{t/τ_η}, η_max), q = max(q₀ e^{−t/τ_q}, q_min)
(n2p2's kalman_type 0 keywords kalman_epsilon, kalman_eta, kalman_etatau, kalman_etamax,
kalman_q0, kalman_qtau, kalman_qmin). P is kept in float64 whatever the model dtype.
Each epoch, every structure gives one energy update and a fraction of its force components
(``force_fraction``, n2p2's short_force_fraction) give force updates, one component at a time,
chosen among those whose error exceeds ``error_threshold`` × the last epoch's force RMSE
(n2p2's selection_mode 2, ``threshold_trials`` random draws, then any component).
"""

from __future__ import annotations

import copy
import math

import torch

from mlpot.training.losses import errors
from mlpot.training.module import PotentialModule
from mlpot.units import BOHR, HARTREE


# n2p2 trained in Hartree and Bohr (force_weight 10) is this filter in eV and Å with these weights
N2P2_ENERGY_WEIGHT = 1.0 / HARTREE
N2P2_FORCE_WEIGHT = 10.0 * BOHR / HARTREE


class KalmanFilter(torch.optim.Optimizer):
    """Global EKF over all parameters; use :meth:`update` (``step`` is not defined for it)."""

    def __init__(self, params, epsilon: float = 0.01, eta0: float = 0.01, etatau: float = 2.302, etamax: float = 1.0,
                 q0: float = 0.01, qtau: float = 2.302, qmin: float = 1e-6):
        if epsilon <= 0 or eta0 <= 0 or etamax <= 0 or etatau <= 0 or qtau <= 0 or q0 < 0 or qmin < 0:
            raise ValueError("Kalman filter parameters must be positive (epsilon, eta0, etamax, etatau, qtau) or >= 0 (q0, qmin)")
        defaults = dict(lr=eta0, q=q0, epsilon=epsilon, eta0=eta0, etatau=etatau, etamax=etamax, q0=q0, qtau=qtau,
                        qmin=qmin, epoch=0)
        super().__init__(params, defaults)
        self._params = [p for g in self.param_groups for p in g["params"]]
        n = sum(p.numel() for p in self._params)
        self.state[self._params[0]]["P"] = torch.eye(n, dtype=torch.float64, device=self._params[0].device) / epsilon
        self.set_epoch(0)

    @property
    def n_weights(self) -> int:
        return self.state[self._params[0]]["P"].shape[0]

    def set_epoch(self, epoch: int) -> None:
        """η and q for this epoch (n2p2's schedules)."""
        for g in self.param_groups:
            g["epoch"] = int(epoch)
            g["lr"] = min(g["eta0"] * math.exp(epoch / g["etatau"]), g["etamax"])
            g["q"] = max(g["q0"] * math.exp(-epoch / g["qtau"]), g["qmin"])

    def step(self, closure=None):  # noqa: D102
        raise RuntimeError("KalmanFilter is driven by update(xi, H), not step(); use EKFModule")

    @torch.no_grad()
    def update(self, xi: torch.Tensor, H: torch.Tensor) -> None:
        """One filter update with errors ``xi`` (m,) and derivatives ``H`` (n_w, m)."""
        g = self.param_groups[0]
        P = self.state[self._params[0]]["P"]
        H = H.to(P.dtype).reshape(P.shape[0], -1)
        X = P @ H
        A = H.T @ X + torch.eye(H.shape[1], dtype=P.dtype, device=P.device) / g["lr"]
        K = torch.linalg.solve(A, X.T).T  # A is symmetric
        P.sub_(K @ X.T)
        P.diagonal().add_(g["q"])
        dw = K @ xi.to(P.dtype).reshape(-1)
        offset = 0
        for p in self._params:
            n = p.numel()
            p.add_(dw[offset : offset + n].view_as(p).to(p.dtype))
            offset += n

    def load_state_dict(self, state_dict):
        # torch casts optimiser state to the parameters' dtype; keep P in float64 for an exact resume
        state_dict = copy.copy(state_dict)
        state = {k: dict(v) for k, v in state_dict["state"].items()}
        P = state.get(0, {}).pop("P", None)
        state_dict["state"] = state
        super().load_state_dict(state_dict)
        if P is not None:
            self.state[self._params[0]]["P"] = P.to(device=self._params[0].device, dtype=torch.float64)


class EKFModule(PotentialModule):
    """PotentialModule trained by :class:`KalmanFilter` updates (Lightning manual optimisation).

    ``force_ratio`` (if set) replaces ``force_fraction``: force updates per structure and epoch, i.e.
    per energy update (the Au study's force-update ratio). ``force_weight`` scales force errors and
    derivatives (n2p2's force_weight), ``energy_weight`` those of energies. Both set the scale of the
    errors against the filter's noise term 1/η: n2p2 trained in Hartree and Bohr is this filter in eV and
    Å with energy_weight = 1/27.211 and force_weight × 0.5292/27.211 (and the network's output scaled by
    27.211, ``model.energy_scale``). ``energy_pattern``: ``total`` (n2p2's: the error and derivative of
    the structure's total energy, so that a structure of N atoms weighs N² more than with ``per_atom``,
    where they are those of the energy per atom). With ``data.batch_size=1`` the update sequence is n2p2's
    (one structure per energy update); larger batches combine their energies into one update.
    """

    def __init__(self, potential, loss_weights=None, optimizer=None, scheduler=None, monitor: str = "val/loss",
                 force_fraction: float = 0.02315, force_weight: float = N2P2_FORCE_WEIGHT, error_threshold: float = 1.0,
                 threshold_trials: int = 3, seed: int = 0, force_ratio: float | None = None,
                 energy_pattern: str = "total", energy_weight: float = N2P2_ENERGY_WEIGHT):
        super().__init__(potential, loss_weights, optimizer=optimizer or KalmanFilter, scheduler=None, monitor=monitor)
        if scheduler is not None:
            raise ValueError("optim=ekf has its own eta and q schedules: set optim.scheduler to null")
        self.automatic_optimization = False
        self.force_fraction, self.force_weight = float(force_fraction), float(force_weight)
        self.energy_weight = float(energy_weight)
        self.error_threshold, self.threshold_trials, self.seed = float(error_threshold), int(threshold_trials), int(seed)
        self.force_ratio = None if force_ratio is None else float(force_ratio)
        if energy_pattern not in ("total", "per_atom"):
            raise ValueError(f"optim.module.energy_pattern must be 'total' or 'per_atom', got {energy_pattern!r}")
        self.energy_pattern = energy_pattern
        self._force_rmse = None

    def _kf(self) -> KalmanFilter:
        opt = self.optimizers()
        return getattr(opt, "optimizer", opt)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._kf().set_epoch(self.current_epoch)
        last = getattr(self, "_last_train", {}) or {}
        self._force_rmse = last.get("train/forces_rmse")

    def _jacobian(self, y: torch.Tensor, params) -> torch.Tensor:
        """∂y/∂w for a vector y: (n_w, m)."""
        cols = []
        for k in range(y.shape[0]):
            grads = torch.autograd.grad(y[k], params, retain_graph=k + 1 < y.shape[0], allow_unused=True)
            cols.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)]))
        return torch.stack(cols, 1)

    def training_step(self, batch, batch_idx):
        kf = self._kf()
        params = [p for p in self.potential.parameters()]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.current_epoch * 10_007 + batch_idx)
        n_atoms = batch["n_atoms"].to(self.potential.dtype)
        per = (n_atoms if self.energy_pattern == "per_atom" else torch.ones_like(n_atoms)) / self.energy_weight
        with torch.enable_grad():
            # energy update (all structures of the batch together)
            m = batch["energy_mask"]
            if m.any() and self.weights.energy > 0:
                pred = self.potential.predict_batch(batch, forces=False)
                y = (pred["energy"] / per)[m]
                xi = (batch["energy"] / per)[m] - y.detach()
                kf.update(xi, self._jacobian(y, params))
            # force updates, one component at a time
            fmask = batch["forces_mask"]
            n_comp = int(fmask.sum()) * 3
            if n_comp and self.weights.forces > 0 and (self.force_fraction > 0 or self.force_ratio):
                expected = (self.force_fraction * n_comp if self.force_ratio is None
                            else self.force_ratio * int(batch["n_atoms"].shape[0]))
                n_updates = int(expected) + int(torch.rand((), generator=gen) < expected - int(expected))
                for _ in range(n_updates):
                    pred = self.potential.predict_batch(batch, forces=True, create_graph=True)
                    err = (batch["forces"] - pred["forces"]).detach()
                    flat = torch.where(fmask[:, None].expand(-1, 3), err, torch.zeros_like(err)).reshape(-1)
                    k = self._select(flat, fmask, gen)
                    y = pred["forces"].reshape(-1)[k : k + 1] * self.force_weight
                    kf.update(flat[k : k + 1] * self.force_weight, self._jacobian(y, params))
        # training errors with the updated weights
        with torch.enable_grad():
            pred = self.potential.predict_batch(batch, forces=True, stress=self.weights.needs_stress())
        self.acc["train"].update(errors(pred, batch))

    def _select(self, flat_err: torch.Tensor, fmask: torch.Tensor, gen: torch.Generator) -> int:
        """A force component: random, preferring errors above threshold × last RMSE (n2p2 selection_mode 2)."""
        valid = torch.nonzero(fmask[:, None].expand(-1, 3).reshape(-1)).reshape(-1)
        rmse = self._force_rmse
        for _ in range(self.threshold_trials if rmse else 0):
            k = int(valid[torch.randint(len(valid), (), generator=gen)])
            if abs(float(flat_err[k])) > self.error_threshold * rmse:
                return k
        return int(valid[torch.randint(len(valid), (), generator=gen)])

    def configure_optimizers(self):
        return self.optimizer_factory(self.potential.parameters())


__all__ = ["KalmanFilter", "EKFModule"]
