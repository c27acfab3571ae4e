"""PINN stage 1 (docs/science.md §7): fit the global BOP parameters p⁰ (and e0) with the networks off.

Runs on the training batches (either kind, read from disk as the data module serves them) before the Lightning loop:
Adam on u⁰ (p⁰ = T(u⁰)) and e0 only, the loss of ``mlpot.training.losses`` (energy per atom,
forces, stress with the configured weights). The networks' outputs are zero throughout (their
last layers start at zero and are not optimised here), so this is a plain BOP fit. Afterwards
u⁰ and e0 are frozen for stage 2 unless the head's ``train_p0`` is set.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from mlpot.training.losses import LossWeights, errors, loss

log = logging.getLogger(__name__)


@torch.no_grad()
def _init_e0(potential, batches) -> None:
    """e0 by least squares of the residual E_ref − E_BOP(p⁰) against composition."""
    head = potential.head
    n_el = head.e0.shape[0]
    counts, residual = [], []
    head.e0.zero_()
    for batch in batches:
        pred = potential.predict_batch(batch, forces=False)
        m = batch["energy_mask"]
        comp = torch.zeros(batch["n_atoms"].shape[0], n_el, dtype=torch.float64)
        comp.index_put_((batch["batch"], batch["species"]), torch.ones_like(batch["species"], dtype=torch.float64),
                        accumulate=True)
        counts.append(comp[m].numpy())
        residual.append((batch["energy"] - pred["energy"])[m].double().numpy())
    if counts:
        e0, *_ = np.linalg.lstsq(np.concatenate(counts), np.concatenate(residual), rcond=None)
        head.e0.copy_(torch.as_tensor(e0, dtype=head.e0.dtype))


def fit_baseline(potential, loader, weights: LossWeights | None = None, epochs: int = 20, lr: float = 0.02,
                 batch_size: int = 16, seed: int = 0) -> list[float]:
    """Stage 1: fit ``potential.head``'s u⁰ and e0 on the training batches; returns the mean loss per epoch.

    ``loader(shuffle, batch_size)`` gives the training split's batches (an epoch's, reshuffled from
    ``seed`` and the epoch when ``shuffle``; e.g. ``AtomsDataModule.loader``). Changes only u⁰ and e0
    (network weights untouched); ``epochs=0`` only sets e0.
    """
    head = potential.head
    weights = weights or LossWeights()
    _init_e0(potential, loader(False, batch_size))
    params = [head.u0, head.e0]
    saved = {p: p.requires_grad for p in potential.parameters()}
    for p in potential.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    history = []
    try:
        for epoch in range(int(epochs)):
            batches = loader(True, batch_size)
            sampler = getattr(batches, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(seed * 1_000 + epoch)
            total, n = 0.0, 0
            for batch in batches:
                pred = potential.predict_batch(batch, forces=weights.forces > 0, stress=weights.stress > 0,
                                               create_graph=True)
                value = loss(errors(pred, batch), weights)
                opt.zero_grad()
                value.backward()
                opt.step()
                total, n = total + float(value.detach()), n + 1
            history.append(total / max(n, 1))
            log.info("PINN stage 1 epoch %d: loss %.6g, p0 %s", epoch, history[-1],
                     [round(float(x), 4) for x in head.p0().detach()[0]])
    finally:
        for p, flag in saved.items():
            p.requires_grad_(flag)
    train_p0 = bool(getattr(head, "train_p0", False))
    head.u0.requires_grad_(train_p0)
    head.e0.requires_grad_(train_p0)
    return history


__all__ = ["fit_baseline"]
