#!/usr/bin/env python
"""Table of a Hydra sweep: one row per run (its overrides and its metrics.json), and mean ± std
over seeds for runs that differ only in ``seed``.

    python scripts/summarize_runs.py outputs/multirun/2026-11-21_18-00-00 [--metrics test/forces_rmse ...] [--csv out.csv]
        [--plot sweep.png] [--markdown sweep.md]

Overrides shared by every run are printed once above the tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

DEFAULT_METRICS = ["test/energy_per_atom_rmse", "test/energy_per_atom_mae", "test/forces_rmse", "test/forces_mae",
                   "train_seconds"]


def load_runs(folder: Path) -> list[dict]:
    runs = []
    for metrics_file in sorted(folder.rglob("metrics.json")):
        run = metrics_file.parent
        overrides_file = run / ".hydra" / "overrides.yaml"
        overrides = []
        if overrides_file.exists():
            overrides = [ln[2:].strip() for ln in overrides_file.read_text().splitlines() if ln.startswith("- ")]
        runs.append({"run": str(run.relative_to(folder)), "overrides": overrides,
                     "metrics": json.loads(metrics_file.read_text())})
    return runs


def _fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def common_overrides(runs: list[dict]) -> list[str]:
    """The overrides every run of the sweep shares (shown once, not in every row)."""
    if len(runs) < 2:
        return []
    shared = set(runs[0]["overrides"]).intersection(*(set(r["overrides"]) for r in runs[1:]))
    return [o for o in runs[0]["overrides"] if o in shared]


def group_runs(runs: list[dict]) -> tuple[list[str], dict[str, list[dict]]]:
    """(common overrides, {setting: [metrics of each seed]}); a setting is a run's other overrides
    without ``seed=``."""
    common = common_overrides(runs)
    groups: dict[str, list[dict]] = {}
    for r in runs:
        key = " ".join(o for o in r["overrides"] if o not in common and not o.startswith("seed=")) or "(defaults)"
        groups.setdefault(key, []).append(r["metrics"])
    return common, dict(sorted(groups.items(), key=lambda kv: _natural(kv[0])))


def _natural(setting: str) -> list:
    """Sort key: settings in order of their values, numbers as numbers (rs=-2 before rs=-1 before rs=0)."""
    key = []
    for override in setting.split():
        name, _, value = override.partition("=")
        try:
            key.append((name, 0, float(value), ""))
        except ValueError:
            key.append((name, 1, 0.0, value))
    return key


def summarize(folder: Path, metrics: list[str]) -> tuple[str, str, list[list], list[str]]:
    """Per-run table, grouped table (mean ± std over seeds), grouped rows, common overrides."""
    runs = load_runs(folder)
    if not runs:
        raise SystemExit(f"{folder}: no metrics.json found")
    common, groups = group_runs(runs)
    rows = [[r["run"], " ".join(o for o in r["overrides"] if o not in common) or "(defaults)"]
            + [r["metrics"].get(m) for m in metrics] for r in runs]
    per_run = table(rows, ["run", "overrides"] + metrics)
    grouped = []
    for key, ms in groups.items():
        row = [key, len(ms)]
        for m in metrics:
            vals = [x[m] for x in ms if m in x]
            if not vals:
                row.append(None)
            elif len(vals) == 1:
                row.append(f"{vals[0]:.4g}")
            else:
                row.append(f"{statistics.mean(vals):.4g} ± {statistics.stdev(vals):.2g}")
        grouped.append(row)
    return per_run, table(grouped, ["settings", "n"] + metrics), grouped, common


def markdown(grouped: list[list], metrics: list[str], common: list[str]) -> str:
    lines = [f"Common overrides: `{' '.join(common)}`", ""] if common else []
    lines += ["| settings | n | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in grouped]
    return "\n".join(lines) + "\n"


def plot(folder: Path, metrics: list[str], out: Path) -> None:
    """One panel per metric: mean ± std over seeds for each setting of the sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, groups = group_runs(load_runs(folder))
    keys = list(groups)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        vals = [[x[m] for x in groups[k] if m in x] for k in keys]
        mean = [statistics.mean(v) if v else float("nan") for v in vals]
        std = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
        ax.errorbar(range(len(keys)), mean, yerr=std, fmt="o", capsize=4)
        ax.set_xticks(range(len(keys)), keys, rotation=30, ha="right", fontsize=7)
        ax.set_title(m, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS)
    ap.add_argument("--csv", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None, help="PNG with mean ± std over seeds per setting")
    ap.add_argument("--markdown", type=Path, default=None, help="the mean ± std table as Markdown")
    args = ap.parse_args(argv)
    per_run, grouped_table, grouped, common = summarize(args.folder, args.metrics)
    if common:
        print("common overrides: " + " ".join(common))
        print()
    print(per_run)
    print()
    print("mean ± std over seeds")
    print(grouped_table)
    if args.markdown:
        args.markdown.write_text(markdown(grouped, args.metrics, common))
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["settings", "n"] + args.metrics)
            w.writerows(grouped)
    if args.plot:
        plot(args.folder, args.metrics, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
