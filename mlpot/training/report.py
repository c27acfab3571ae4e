"""Run artefacts: metrics.json, parity plots and learning curves."""

from __future__ import annotations

import json
from pathlib import Path

import torch



def parity_data(potential, batches) -> dict[str, torch.Tensor]:
    """(label, prediction) pairs over batches (either kind) for energy per atom, forces and atomic energies."""
    from lightning_fabric.utilities.apply_func import move_data_to_device

    out = {"energy_per_atom": [], "forces": [], "atomic_energies": []}
    for batch in batches:
        batch = move_data_to_device(batch, potential.device)
        with torch.enable_grad():
            pred = potential.predict_batch(batch, forces=True)
        n = batch["n_atoms"].to(pred["energy"].dtype)
        m = batch["energy_mask"]
        out["energy_per_atom"].append(torch.stack([(batch["energy"] / n)[m], (pred["energy"].detach() / n)[m]], 1))
        fm = batch["forces_mask"]
        out["forces"].append(torch.stack([batch["forces"][fm].reshape(-1), pred["forces"].detach()[fm].reshape(-1)], 1))
        am = batch["atomic_energies_mask"]
        out["atomic_energies"].append(torch.stack([batch["atomic_energies"][am], pred["atomic_energies"].detach()[am]], 1))
    return {k: torch.cat(v).double().cpu() for k, v in out.items() if v and torch.cat(v).numel()}


def write_metrics(path, metrics: dict) -> None:
    from mlpot.files import write_text

    clean = {k: float(v) for k, v in metrics.items()}
    write_text(path, json.dumps(clean, indent=2, sort_keys=True) + "\n")


def plot_parity(data: dict, folder) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = {"energy_per_atom": "eV/atom", "forces": "eV/Å", "atomic_energies": "eV"}
    paths = []
    for key, xy in data.items():
        if not xy.numel():
            continue
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
        x, y = xy[:, 0].numpy(), xy[:, 1].numpy()
        ax.plot(x, y, ".", ms=2, alpha=0.5)
        lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)
        rmse = float(((xy[:, 1] - xy[:, 0]) ** 2).mean().sqrt())
        ax.set_xlabel(f"reference {key} ({units[key]})")
        ax.set_ylabel(f"model {key} ({units[key]})")
        ax.set_title(f"test {key}: RMSE {rmse:.4g} {units[key]}", fontsize=9)
        fig.tight_layout()
        p = Path(folder) / f"parity_{key}.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
    return paths


def plot_learning_curves(history: list[dict], folder) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    epochs = [h["epoch"] for h in history]
    for ax, key, unit in ((axes[0], "energy_per_atom_rmse", "eV/atom"), (axes[1], "forces_rmse", "eV/Å")):
        for stage in ("train", "val"):
            ys = [h.get(f"{stage}/{key}") for h in history]
            if any(y is not None for y in ys):
                ax.semilogy(epochs, [float("nan") if y is None else y for y in ys], label=stage)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{key} ({unit})")
        ax.legend()
    fig.tight_layout()
    p = Path(folder) / "learning_curves.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p
