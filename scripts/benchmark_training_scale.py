"""Training at scale (issue 16): conversion, store sizes, peak memory and epoch throughput of both force paths.

Generates a three-element alloy set (ASE's EMT for Cu, Ag, Au; random compositions; 108-atom fcc cells
strained by up to ±3 % and rattled by 0.1 Å) of N frames. Then, for each N, descriptor and force path, it runs
each step in a fresh process under ``/usr/bin/time -v`` and prints one table:

* conversion: ``mlpot-prepare --frames-only`` (seconds, frame-store size, peak RSS);
* cached path: the Jacobian store's build (``mlpot-prepare training.forces=jacobian``: seconds, MB per frame,
  peak RSS), skipped where its estimated size exceeds ``--jacobian-max-gb``;
* one training epoch (``mlpot-train trainer.max_epochs=1``): the process's peak resident memory
  (``Maximum resident set size``, file-backed pages included) and the training epoch's frames per second
  (``train/epoch_seconds``, validation excluded);
* the previous version (``--baseline-ref``: in-memory Jacobian cache, run from a git worktree) beside it, up to
  ``--baseline-max-n`` frames.

``steps`` mode times training steps in one process on any device (the GPU check): atoms per second and peak
memory of the on-the-fly path, with torch's ``index_add_`` and with torch-scatter where it is installed.

    python scripts/benchmark_training_scale.py --sizes 500 2000 8000 --out outputs/bench_scale
    python scripts/benchmark_training_scale.py steps --device cuda --sizes 500
    python scripts/benchmark_training_scale.py generate --n 500 --out outputs/bench_scale

Every training process gets ``--threads`` torch threads (default 1). Run it alone on the machine: the load
average is printed with every row. Results accumulate in ``<out>/results.json`` (a second call skips rows
it has; delete the file to start again).
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
    done = out.with_name(out.name + ".done")
    if out.exists() and done.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tmp = out.with_name(out.name + ".tmp")
    calc = EMT()
    t0 = time.perf_counter()
    with open(tmp, "w") as fh:
        for k in range(n):
            symbols = rng.choice(ELEMENTS, size=108, p=rng.dirichlet(np.ones(3)))
            atoms = bulk("Cu", "fcc", a=float(np.mean([LATTICE[s] for s in symbols])), cubic=True).repeat((3, 3, 3))
            atoms.set_chemical_symbols(list(symbols))
            strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
            atoms.set_cell(atoms.cell.array @ (0.5 * (strain + strain.T)), scale_atoms=True)
            atoms.positions += rng.normal(0.0, 0.1, atoms.positions.shape)
            atoms.calc = calc
            e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
            atoms.calc = None
            atoms.info.update(energy=e, stress=s, config_type="alloy")
            atoms.arrays["forces"] = f
            ase.io.write(fh, atoms, format="extxyz")
            if (k + 1) % 1000 == 0:
                print(f"  generated {k + 1}/{n} frames ({time.perf_counter() - t0:.0f} s)", flush=True)
    os.replace(tmp, out)
    done.write_text(str(n))
    return out


def timed(cmd: list[str], env: dict, cwd: Path, log: Path) -> dict:
    """Run ``cmd`` under ``/usr/bin/time -v``: wall seconds, peak RSS (GB), return code."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        res = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"wall": time.perf_counter() - t0, "rss_gb": int(m.group(1)) / 1e6 if m else float("nan"),
            "rc": res.returncode}


def env_for(threads: int, pythonpath: Path | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def data_overrides(data: Path, desc: str) -> list[str]:
    return ["data=xyz", f"data.path={data}", f"descriptor={desc}"]


def _estimate(data: Path, desc: str, cache: Path, threads: int) -> float:
    """mlpot's own estimate of the Jacobian store's size (GB), from a sample of neighbour lists."""
    code = ("import sys,torch;from hydra import compose,initialize_config_dir;from hydra.utils import instantiate\n"
            "from omegaconf import open_dict;from mlpot.train import CONF_DIR\n"
            "with initialize_config_dir(config_dir=CONF_DIR,version_base='1.3'):\n"
            f"    cfg=compose('train',overrides={data_overrides(data, desc) + [f'data.cache_dir={cache}']!r})\n"
            "dm=instantiate(cfg.data);dm.load()\n"
            "with open_dict(cfg): cfg.elements=list(dm.elements)\n"
            "print(dm.estimate_jacobian_bytes(instantiate(cfg.descriptor),torch.float32)/1e9)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_for(threads))
    try:
        return float(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(res.stderr[-2000:])
        return float("nan")


def _epoch(run_dir: Path) -> float | None:
    """Seconds of the (first) training epoch from the run's history (validation excluded)."""
    try:
        hist = json.loads((run_dir / "history.json").read_text())
    except (OSError, ValueError):
        return None
    for row in hist:
        if "train/epoch_seconds" in row:
            return row["train/epoch_seconds"]
    return None


def _timings(run_dir: Path, n_train: int) -> dict:
    """fit_seconds (the epoch and its validation, both versions log it) and epoch_seconds (the training epoch
    alone, where the version logs it), with training frames per second of each."""
    out = {}
    try:
        fit = json.loads((run_dir / "metrics.json").read_text())["train_seconds"]
        out.update(fit_seconds=fit, fit_frames_per_s=n_train / fit)
    except (OSError, ValueError, KeyError):
        pass
    epoch = _epoch(run_dir)
    if epoch:
        out.update(epoch_seconds=epoch, frames_per_s=n_train / epoch)
    return out


def run_all(args) -> None:
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    baseline = None
    if args.baseline_ref:
        baseline = out / f"baseline_{args.baseline_ref}"
        if not baseline.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline_ref],
                           check=True, capture_output=True)
    results = out / "results.json"
    done = json.loads(results.read_text()) if results.exists() else []
    have = {(r["N"], r["descriptor"], r["path"]) for r in done}

    def record(row):
        done.append(row)
        have.add((row["N"], row["descriptor"], row["path"]))
        results.write_text(json.dumps(done, indent=1))
        print("  " + json.dumps(row), flush=True)

    env = env_for(args.threads)
    for n in args.sizes:
        data = generate(n, out / f"alloy_{n}.extxyz")
        cache = out / f"cache_{n}"
        if (n, "-", "convert") not in have:
            r = timed([sys.executable, "-m", "mlpot.prepare", "data=xyz", f"data.path={data}",
                       f"data.cache_dir={cache}", "--frames-only"], env, out, out / f"convert_{n}.log")
            store = next(cache.glob("frames-*.h5"))
            record({"N": n, "descriptor": "-", "path": "convert", "seconds": r["wall"], "rss_gb": r["rss_gb"],
                    "store_mb": store.stat().st_size / 1e6, "load": os.getloadavg()[0]})
        for desc in args.descriptors:
            previous = baseline is not None and n <= args.baseline_max_n and desc in args.baseline_descriptors
            variants = list(args.paths) + (["previous"] if previous else [])
            for path in variants:
                if (n, desc, path) in have:
                    continue
                run_dir = out / f"run_{n}_{desc}_{path}"
                row = {"N": n, "descriptor": desc, "path": path}
                common = [*data_overrides(data, desc), "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                          "export=false", f"data.batch_size={args.batch_size}", f"run_dir={run_dir}",
                          "data.keep_in_memory_gb=0",  # the streaming path at every N (what scales)
                          f"hydra.run.dir={run_dir}"]
                if path == "jacobian":
                    est = _estimate(data, desc, cache, args.threads)
                    row["store_gb_estimate"] = est
                    if not est <= args.jacobian_max_gb:
                        row["skipped"] = f"estimated Jacobian store {est:.0f} GB > {args.jacobian_max_gb:g} GB"
                        record(row)
                        continue
                    r = timed([sys.executable, "-m", "mlpot.prepare", *data_overrides(data, desc),
                               f"data.cache_dir={cache}", "training.forces=jacobian"], env, out,
                              out / f"jacobians_{n}_{desc}.log")
                    newest = max(cache.glob("jacobians-*.h5"), key=lambda p: p.stat().st_mtime)
                    row.update(cache_seconds=r["wall"], cache_rss_gb=r["rss_gb"],
                               store_mb_per_frame=newest.stat().st_size / 1e6 / n)
                if path == "previous":
                    cmd, penv = [sys.executable, "-m", "mlpot.train", *common], env_for(args.threads, baseline)
                else:
                    cmd = [sys.executable, "-m", "mlpot.train", *common, f"data.cache_dir={cache}",
                           f"training.forces={path}"]
                    penv = env
                r = timed(cmd, penv, out, out / f"train_{n}_{desc}_{path}.log")
                row.update(rc=r["rc"], wall=r["wall"], rss_gb=r["rss_gb"], load=os.getloadavg()[0])
                row.update(_timings(run_dir, round(0.8 * n)))
                record(row)
    print_table(done, args)


def print_table(done: list[dict], args) -> None:
    conv = {r["N"]: r for r in done if r["path"] == "convert"}
    nan = float("nan")
    print(f"\nmachine: {os.cpu_count()} cores; torch threads per process: {args.threads}; batch size {args.batch_size}")
    print("\n| N | conversion s | frame store MB | conversion peak RSS GB |")
    print("|---|---|---|---|")
    for n, c in sorted(conv.items()):
        print(f"| {n} | {c['seconds']:.1f} | {c['store_mb']:.0f} | {c['rss_gb']:.2f} |")
    print("\n| N | descriptor | path | Jacobian store MB/frame | store build s | build peak RSS GB "
          "| epoch peak RSS GB | epoch s (train frames/s) | epoch + validation s (train frames/s) | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in done:
        if r["path"] == "convert":
            continue
        if "skipped" in r:
            print(f"| {r['N']} | {r['descriptor']} | {r['path']} | ({r['skipped']}) | | | | | | |")
            continue
        failed = "" if r.get("rc", 0) == 0 else f" (exit {r['rc']})"
        epoch = (f"{r['epoch_seconds']:.1f} ({r['frames_per_s']:.1f})" if "epoch_seconds" in r else "n/a")
        fit = (f"{r['fit_seconds']:.1f} ({r['fit_frames_per_s']:.1f})" if "fit_seconds" in r else "n/a")
        if r.get("epoch_includes_validation"):  # the previous version times the epoch with its validation
            epoch, fit = "n/a", epoch
        print(f"| {r['N']} | {r['descriptor']} | {r['path']}{failed} | {r.get('store_mb_per_frame', nan):.2f} | "
              f"{r.get('cache_seconds', nan):.0f} | {r.get('cache_rss_gb', nan):.2f} | {r.get('rss_gb', nan):.2f} | "
              f"{epoch} | {fit} | {r.get('load', nan):.2f} |")
    print("\nprevious: the version before the stores (in-memory Jacobian cache, built in the same process: its "
          "epoch peak RSS includes it)")


def steps(args) -> None:
    """Training-step throughput of the on-the-fly path in one process (``--device``), per scatter backend."""
    import torch
    from hydra import compose, initialize_config_dir
    from lightning_fabric.utilities.apply_func import move_data_to_device

    from mlpot.ops import set_scatter_backend
    from mlpot.system import tune_allocator
    from mlpot.train import CONF_DIR, build
    from mlpot.training.losses import errors, loss

    tune_allocator()
    device = torch.device(args.device)
    rows = []
    for n in args.sizes:
        data = generate(n, args.out.resolve() / f"alloy_{n}.extxyz")
        for desc in args.descriptors:
            for backend in args.backends:
                try:
                    set_scatter_backend(backend)
                except ImportError as exc:
                    rows.append((n, desc, backend, f"not available ({exc})".split(";")[0]))
                    continue
                with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
                    cfg = compose("train", overrides=[*data_overrides(data, desc), "training.forces=autograd",
                                                      f"data.cache_dir={args.out.resolve() / f'cache_{n}'}",
                                                      f"data.batch_size={args.batch_size}", "run_dir=unused"])
                dm, pot, module = build(cfg)
                pot = pot.to(device)
                opt = torch.optim.AdamW(pot.parameters(), lr=1e-3)
                loader = iter(dm.loader("train", True))
                atoms, seconds = 0, 0.0
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                for k in range(args.warmup + args.steps):
                    batch = move_data_to_device(next(loader), device)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    t0 = time.perf_counter()
                    pred = pot.predict_batch(batch, forces=True, create_graph=True)
                    value = loss(errors(pred, batch), module.weights)
                    opt.zero_grad()
                    value.backward()
                    opt.step()
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    if k >= args.warmup:
                        seconds += time.perf_counter() - t0
                        atoms += int(batch["n_atoms"].sum())
                peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
                rows.append((n, desc, backend, f"{atoms / seconds:.0f} atoms/s, {atoms / seconds / 108:.1f} frames/s, "
                                               f"peak GPU memory {peak:.2f} GB"))
                print(rows[-1], flush=True)
                set_scatter_backend("native")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"\non-the-fly training steps on {name} (batch {args.batch_size} frames, {args.steps} steps after "
          f"{args.warmup} warm-up, torch {torch.__version__})")
    print("| N | descriptor | scatter | result |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="run", choices=("run", "steps", "generate"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000])
    ap.add_argument("--n", type=int, default=500, help="frames (generate)")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_scale")
    ap.add_argument("--descriptors", nargs="+", default=["acsf", "bessel_acsf"])
    ap.add_argument("--paths", nargs="+", default=["jacobian", "autograd"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--baseline-ref", default="cfe6d33", help="git ref of the previous version ('' to skip)")
    ap.add_argument("--baseline-max-n", type=int, default=500, help="largest N to run the previous version on")
    ap.add_argument("--baseline-descriptors", nargs="+", default=["acsf"],
                    help="descriptors to run the previous version with (its in-memory cache of bessel_acsf for three "
                         "elements takes over 7 GB for 4 frames)")
    ap.add_argument("--jacobian-max-gb", type=float, default=30.0,
                    help="skip the cached path where its estimated store exceeds this (disk)")
    ap.add_argument("--device", default="cpu", help="steps mode: cpu or cuda")
    ap.add_argument("--backends", nargs="+", default=["native", "torch_scatter"], help="steps mode")
    ap.add_argument("--steps", type=int, default=20, help="steps mode: timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="steps mode: untimed steps first")
    args = ap.parse_args(argv)
    if args.mode == "generate":
        generate(args.n, args.out / f"alloy_{args.n}.extxyz")
    elif args.mode == "steps":
        steps(args)
    else:
        run_all(args)


if __name__ == "__main__":
    main()
