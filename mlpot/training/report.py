"""Run artefacts: metrics.json, parity plots and learning curves."""

from __future__ import annotations

import json
from pathlib import Path

import torch



def parity_data(potential, batches) -> dict[str, torch.Tensor]:
    """(label, prediction, frame) rows over batches (either kind) for energy per atom, forces (one row per
    component) and atomic energies; ``frame`` counts the frames in the order the batches give them."""
    from lightning_fabric.utilities.apply_func import move_data_to_device

    out = {"energy_per_atom": [], "forces": [], "atomic_energies": []}
    offset = 0
    for batch in batches:
        batch = move_data_to_device(batch, potential.device)
        with torch.enable_grad():
            pred = potential.predict_batch(batch, forces=True)
        n = batch["n_atoms"].to(pred["energy"].dtype)
        frame = offset + torch.arange(n.shape[0], device=n.device, dtype=n.dtype)
        atom_frame = torch.repeat_interleave(frame, batch["n_atoms"])
        offset += n.shape[0]
        m = batch["energy_mask"]
        out["energy_per_atom"].append(torch.stack([(batch["energy"] / n)[m], (pred["energy"].detach() / n)[m],
                                                   frame[m]], 1))
        fm = batch["forces_mask"]
        out["forces"].append(torch.stack([batch["forces"][fm].reshape(-1), pred["forces"].detach()[fm].reshape(-1),
                                          atom_frame[fm].repeat_interleave(3)], 1))
        am = batch["atomic_energies_mask"]
        out["atomic_energies"].append(torch.stack([batch["atomic_energies"][am],
                                                   pred["atomic_energies"].detach()[am], atom_frame[am]], 1))
    return {k: torch.cat(v).double().cpu() for k, v in out.items() if v and torch.cat(v).numel()}


def write_metrics(path, metrics: dict) -> None:
    from mlpot.files import write_text

    clean = {k: float(v) for k, v in metrics.items()}
    write_text(path, json.dumps(clean, indent=2, sort_keys=True) + "\n")


def _errors(x, y) -> str:
    d = y - x
    return f"MAE {abs(d).mean():.3g}, RMSE {(d**2).mean() ** 0.5:.3g}"


def plot_parity(data: dict, folder, groups=None, max_groups: int = 10) -> list[Path]:
    """One parity plot per quantity; ``groups``: the config_type of each frame (in the order of
    :func:`parity_data`'s frame column), each its own colour with its count, MAE and RMSE in the legend
    (the ``max_groups`` - 1 largest, the rest as "other")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    units = {"energy_per_atom": "eV/atom", "forces": "eV/Å", "atomic_energies": "eV"}
    paths = []
    for key, xy in data.items():
        if not xy.numel():
            continue
        fig, ax = plt.subplots(figsize=(5.0, 4.6))
        x, y = xy[:, 0].numpy(), xy[:, 1].numpy()
        names = None
        if groups is not None and xy.shape[1] > 2:
            frame = xy[:, 2].numpy().astype(int)
            names = np.array([str(groups[f]) if 0 <= f < len(groups) and groups[f] is not None else "(none)"
                              for f in frame])
        kinds = list(dict.fromkeys(names.tolist())) if names is not None else []
        if len(kinds) > 1:
            counts = {k: int((names == k).sum()) for k in kinds}
            kinds.sort(key=lambda k: -counts[k])
            if len(kinds) > max_groups:
                names = np.where(np.isin(names, kinds[: max_groups - 1]), names, "other")
                kinds = kinds[: max_groups - 1] + ["other"]
            for k in kinds:
                sel = names == k
                ax.plot(x[sel], y[sel], ".", ms=2.5, alpha=0.6, label=f"{k} ({int(sel.sum())}): {_errors(x[sel], y[sel])}")
        else:
            ax.plot(x, y, ".", ms=2, alpha=0.5, label=f"{len(x)} values: {_errors(x, y)}")
        lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)
        ax.set_xlabel(f"reference {key} ({units[key]})")
        ax.set_ylabel(f"model {key} ({units[key]})")
        ax.set_title(f"test {key} ({units[key]}): {_errors(x, y)}", fontsize=9)
        ax.legend(fontsize=6, markerscale=3, loc="upper left", title="config_type" if len(kinds) > 1 else None,
                  title_fontsize=6)
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
