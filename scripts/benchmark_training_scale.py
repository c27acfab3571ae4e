"""Training at scale (issue 16): conversion, store size, peak memory and epoch throughput of both force paths.

Generates a three-element alloy set (ASE's EMT for Cu, Ag, Au; random compositions; 108-atom fcc cells,
strained by up to ±3 % and rattled by 0.1 Å) of N frames, then for each N, descriptor and force path runs
one epoch of ``mlpot-train`` in a fresh process under ``/usr/bin/time -v`` and prints a table:

* conversion time and frame-store size (``mlpot-prepare --frames-only``, also under ``time -v``);
* Jacobian-store size per frame and build time (cached path);
* peak resident memory of the one-epoch training process (``Maximum resident set size``, which counts the
  file-backed pages it touched) and that epoch's frames per second (training frames / seconds of the
  first epoch, from the run's ``history`` timings);
* beside it, the previous version (``--baseline-ref``, in-memory Jacobian cache) at the sizes where it fits.

    python scripts/benchmark_training_scale.py --sizes 500 2000 8000 --out outputs/bench_scale
    python scripts/benchmark_training_scale.py generate --n 500 --out outputs/bench_scale/alloy_500.extxyz

Each training process runs with OMP_NUM_THREADS=1 (one core) unless --threads is given; the load average
is printed with every row. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ELEMENTS = ("Cu", "Ag", "Au")
LATTICE = {"Cu": 3.61, "Ag": 4.09, "Au": 4.08}


def generate(n: int, out: Path, seed: int = 0) -> Path:
    """``n`` labelled alloy frames (EMT energy, forces, stress) in one extxyz file, written as they are made."""
    import ase.io
    from ase.build import bulk
    from ase.calculators.emt import EMT

    out = Path(out)
    if out.exists() and out.with_suffix(".done").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tmp = out.with_name(out.name + ".tmp")
    calc = EMT()
    t0 = time.perf_counter()
    with open(tmp, "w") as fh:
        for k in range(n):
            frac = rng.dirichlet(np.ones(3))
            symbols = rng.choice(ELEMENTS, size=108, p=frac)
            a0 = float(sum(LATTICE[s] for s in symbols) / len(symbols))
            atoms = bulk("Cu", "fcc", a=a0, cubic=True).repeat((3, 3, 3))
            atoms.set_chemical_symbols(list(symbols))
            strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
            strain = 0.5 * (strain + strain.T)
            atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            atoms.positions += rng.normal(0.0, 0.1, atoms.positions.shape)
            atoms.calc = calc
            e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
            atoms.calc = None
            atoms.info.update(energy=e, stress=s, config_type="alloy")
            atoms.arrays["forces"] = f
            ase.io.write(fh, atoms, format="extxyz")
            if (k + 1) % 500 == 0:
                print(f"  generated {k + 1}/{n} frames ({time.perf_counter() - t0:.0f} s)", flush=True)
    os.replace(tmp, out)
    out.with_suffix(".done").write_text(str(n))
    return out


def timed(cmd: list[str], env: dict, cwd: Path, log: Path) -> dict:
    """Run ``cmd`` under ``/usr/bin/time -v``: wall seconds, peak RSS (GB), return code."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        res = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"wall": wall, "rss_gb": int(m.group(1)) / 1e6 if m else float("nan"), "rc": res.returncode}


def env_for(threads: int, pythonpath: Path | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONWARNINGS": "ignore", "HYDRA_FULL_ERROR": "1"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def train_cmd(data: Path, descriptor: str, run_dir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "mlpot.train", "data=xyz", f"data.path={data}", f"descriptor={descriptor}",
            "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger=csv", "export=false",
            f"run_dir={run_dir}", f"hydra.run.dir={run_dir}", "callbacks=default", *extra]


def epoch_rate(run_dir: Path, n_train: int) -> tuple[float, float]:
    """(seconds, training frames per second) of the one training epoch: Lightning's epoch time from the CSV
    logger is not kept, so the run's ``train_seconds`` (fit, validation included) is used."""
    m = json.loads((run_dir / "metrics.json").read_text())
    return m["train_seconds"], n_train / m["train_seconds"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="run", choices=("run", "generate"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000])
    ap.add_argument("--n", type=int, default=500, help="frames (generate)")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_scale")
    ap.add_argument("--descriptors", nargs="+", default=["acsf", "bessel_acsf"])
    ap.add_argument("--paths", nargs="+", default=["jacobian", "autograd"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--baseline-ref", default="cfe6d33", help="git ref of the previous version ('' to skip)")
    ap.add_argument("--baseline-max-n", type=int, default=500, help="largest N to run the previous version on")
    ap.add_argument("--jacobian-max-gb", type=float, default=40.0,
                    help="skip the cached path where its estimated store exceeds this (disk)")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    if args.mode == "generate":
        generate(args.n, out if out.suffix else out / f"alloy_{args.n}.extxyz")
        return
    out.mkdir(parents=True, exist_ok=True)
    baseline = None
    if args.baseline_ref:
        baseline = out / f"baseline_{args.baseline_ref}"
        if not baseline.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline_ref],
                           check=True, capture_output=True)
    rows = []
    results = out / "results.json"
    done = json.loads(results.read_text()) if results.exists() else []
    key = lambda r: (r["N"], r["descriptor"], r["path"])  # noqa: E731
    have = {key(r): r for r in done}
    for n in args.sizes:
        data = generate(n, out / f"alloy_{n}.extxyz")
        cache = out / f"cache_{n}"
        conv = have.get((n, "-", "convert"))
        if conv is None:
            log = out / f"convert_{n}.log"
            r = timed([sys.executable, "-m", "mlpot.prepare", "data=xyz", f"data.path={data}", f"data.cache_dir={cache}",
                       "--frames-only"], env_for(args.threads), out, log)
            store = next(cache.glob("frames-*.h5"))
            conv = {"N": n, "descriptor": "-", "path": "convert", "seconds": r["wall"], "rss_gb": r["rss_gb"],
                    "store_mb": store.stat().st_size / 1e6, "load": os.getloadavg()[0]}
            done.append(conv)
            results.write_text(json.dumps(done, indent=1))
        print(f"N={n}: conversion {conv['seconds']:.1f} s (process), store {conv['store_mb']:.0f} MB, "
              f"peak RSS {conv['rss_gb']:.2f} GB", flush=True)
        n_train = round(0.8 * n)
        for desc in args.descriptors:
            variants = [(p, None) for p in args.paths]
            if baseline is not None and n <= args.baseline_max_n:
                variants.append(("previous", baseline))
            for path, pp in variants:
                if (n, desc, path) in have:
                    rows.append(have[(n, desc, path)])
                    continue
                run_dir = out / f"run_{n}_{desc}_{path}"
                extra = [f"data.batch_size={args.batch_size}"]
                row = {"N": n, "descriptor": desc, "path": path}
                if path == "previous":
                    cmd = train_cmd(data, desc, run_dir, extra)
                else:
                    cmd = train_cmd(data, desc, run_dir, [*extra, f"data.cache_dir={cache}", f"training.forces={path}"])
                    if path == "jacobian":  # build the store first (timed apart), skip it where it would not fit
                        prep = [sys.executable, "-m", "mlpot.prepare", "data=xyz", f"data.path={data}",
                                f"descriptor={desc}", f"data.cache_dir={cache}", "training.forces=jacobian",
                                f"training.jacobian_budget_gb={args.jacobian_max_gb}"]
                        est = _estimate(data, desc, cache, args)
                        row["store_gb_estimate"] = est
                        if est > args.jacobian_max_gb:
                            row["skipped"] = f"estimated store {est:.1f} GB > {args.jacobian_max_gb} GB"
                            print(f"  {desc} {path}: {row['skipped']}", flush=True)
                            done.append(row)
                            results.write_text(json.dumps(done, indent=1))
                            rows.append(row)
                            continue
                        r = timed(prep, env_for(args.threads), out, out / f"prepare_{n}_{desc}.log")
                        jst = next(cache.glob(f"jacobians-*{_desc_hint(desc)}*.h5"), None) if False else None
                        sizes = sorted(cache.glob("jacobians-*.h5"), key=lambda p: p.stat().st_mtime)
                        jst = sizes[-1] if sizes else None
                        row.update(cache_seconds=r["wall"], cache_rss_gb=r["rss_gb"],
                                   store_mb_per_frame=(jst.stat().st_size / 1e6 / n) if jst else float("nan"))
                r = timed(cmd, env_for(args.threads, pp), out, out / f"train_{n}_{desc}_{path}.log")
                row.update(rc=r["rc"], wall=r["wall"], rss_gb=r["rss_gb"], load=os.getloadavg()[0])
                if r["rc"] == 0:
                    row["train_seconds"], row["frames_per_s"] = epoch_rate(run_dir, n_train)
                print(f"  {desc:12s} {path:9s} " + json.dumps({k: v for k, v in row.items()
                                                               if k not in ("N", "descriptor", "path")}), flush=True)
                done.append(row)
                results.write_text(json.dumps(done, indent=1))
                rows.append(row)
    print_table(done)


def _desc_hint(desc):  # unused helper kept for symmetry with the glob above
    return desc


def _estimate(data: Path, desc: str, cache: Path, args) -> float:
    """Estimated Jacobian-store size (GB) of the data for a descriptor, from mlpot's own estimate."""
    code = ("import sys,torch;from hydra import compose,initialize_config_dir;from hydra.utils import instantiate;"
            "from omegaconf import open_dict;from mlpot.train import CONF_DIR;"
            "from mlpot.data.datamodule import AtomsDataModule\n"
            "with initialize_config_dir(config_dir=CONF_DIR,version_base='1.3'):\n"
            f"    cfg=compose('train',overrides=['data=xyz','data.path={data}','descriptor={desc}','data.cache_dir={cache}'])\n"
            "dm=instantiate(cfg.data);dm.load()\n"
            "with open_dict(cfg): cfg.elements=list(dm.elements)\n"
            "d=instantiate(cfg.descriptor);print(dm.estimate_jacobian_bytes(d,torch.float32)/1e9)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_for(args.threads))
    try:
        return float(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(res.stderr[-2000:])
        return float("nan")


def print_table(done: list[dict]) -> None:
    conv = {r["N"]: r for r in done if r["path"] == "convert"}
    print("\n| N | conversion (s) | frame store (MB) | descriptor | path | Jacobian store (MB/frame) | store build (s) "
          "| peak RSS, one epoch (GB) | epoch (s) | train frames/s | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in done:
        if r["path"] == "convert":
            continue
        c = conv.get(r["N"], {})
        if "skipped" in r:
            print(f"| {r['N']} | {c.get('seconds', float('nan')):.1f} | {c.get('store_mb', float('nan')):.0f} | "
                  f"{r['descriptor']} | {r['path']} | ({r['skipped']}) | | | | | |")
            continue
        print(f"| {r['N']} | {c.get('seconds', float('nan')):.1f} | {c.get('store_mb', float('nan')):.0f} | "
              f"{r['descriptor']} | {r['path']} | {r.get('store_mb_per_frame', float('nan')):.2f} | "
              f"{r.get('cache_seconds', float('nan')):.0f} | {r.get('rss_gb', float('nan')):.2f} | "
              f"{r.get('train_seconds', float('nan')):.0f} | {r.get('frames_per_s', float('nan')):.1f} | "
              f"{r.get('load', float('nan')):.2f} |")


if __name__ == "__main__":
    main()
