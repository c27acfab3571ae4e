"""Loss terms and error metrics (docs/science.md §8), with per-frame label masks."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mlpot.errors import MissingLabelError

# metric name -> (prediction key, label key, how to compute the error)
QUANTITIES = ("energy", "energy_per_atom", "forces", "stress", "atomic_energies")


@dataclass
class LossWeights:
    """Weights of the loss terms; a zero weight switches a term off."""

    energy: float = 1.0  # on (E - E_ref) / N, eV/atom
    forces: float = 1.0  # per component, eV/Å
    stress: float = 0.0  # per component, eV/Å³
    atomic_energies: float = 0.0  # eV

    def needs(self) -> tuple[str, ...]:
        return tuple(k for k in ("energy", "forces", "stress", "atomic_energies") if getattr(self, k) > 0)

    def needs_forces(self) -> bool:
        return self.forces > 0

    def needs_stress(self) -> bool:
        return self.stress > 0


def errors(pred: dict, batch: dict) -> dict[str, torch.Tensor]:
    """Per-item errors (prediction − label) of every quantity whose label exists in the batch."""
    out = {}
    m = batch["energy_mask"]
    if m.any():
        de = (pred["energy"] - batch["energy"])[m]
        out["energy"] = de
        out["energy_per_atom"] = de / batch["n_atoms"][m].to(de.dtype)
    if "forces" in pred and batch["forces_mask"].any():
        out["forces"] = (pred["forces"] - batch["forces"])[batch["forces_mask"]].reshape(-1)
    if "stress" in pred and batch["stress_mask"].any():
        out["stress"] = (pred["stress"] - batch["stress"])[batch["stress_mask"]].reshape(-1)
    m = batch["atomic_energies_mask"]
    if m.any():
        out["atomic_energies"] = (pred["atomic_energies"] - batch["atomic_energies"])[m]
    return out


LOSS_TERMS = (("energy_per_atom", "energy"), ("forces", "forces"), ("stress", "stress"),
              ("atomic_energies", "atomic_energies"))


def loss(err: dict, weights: LossWeights, counts: dict | None = None) -> torch.Tensor:
    """Σ_k w_k · Σ err_k² / N_k over the terms present in the batch (missing labels are masked out).

    N_k is the batch's own number of items (a mean), or with ``counts`` the number over a whole split, so
    that the losses of the batches of a split add up to the loss of the split as one batch (full-batch
    L-BFGS over data read in batches); then a batch without any weighted label contributes zero."""
    total = None
    for key, attr in LOSS_TERMS:
        w = getattr(weights, attr)
        if w > 0 and key in err and err[key].numel():
            n = err[key].numel() if counts is None else counts[key]
            term = w * (err[key] ** 2).sum() / n
            total = term if total is None else total + term
    if total is None:
        if counts is not None:
            return torch.zeros(())
        raise MissingLabelError("no frame in this batch has a label that the loss terms use")
    return total


class ErrorAccumulator:
    """Sums of squared and absolute errors and counts per quantity; exact under DDP (sums are all-reduced)."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}

    def update(self, err: dict):
        for k, e in err.items():
            e = e.detach().double()
            s = torch.stack([(e**2).sum(), e.abs().sum(), torch.tensor(float(e.numel()), dtype=torch.float64, device=e.device)])
            self.sums[k] = self.sums[k] + s if k in self.sums else s

    def compute(self, reduce=None) -> dict[str, float]:
        """RMSE and MAE per quantity; ``reduce`` sums a tensor across processes (DDP)."""
        keys = [k for k in QUANTITIES]
        device = next(iter(self.sums.values())).device if self.sums else "cpu"
        stacked = torch.stack([self.sums.get(k, torch.zeros(3, dtype=torch.float64, device=device)) for k in keys])
        if reduce is not None:
            stacked = reduce(stacked)
        out = {}
        for k, (sq, ab, n) in zip(keys, stacked.tolist()):
            if n > 0:
                out[f"{k}_rmse"] = (sq / n) ** 0.5
                out[f"{k}_mae"] = ab / n
                out[f"{k}_count"] = n
        return out

    def reset(self):
        self.sums = {}
