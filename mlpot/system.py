"""Process set-up of mlpot's command-line apps (not done on import: a library leaves the process alone).

``tune_allocator()``: glibc returns large freed blocks to the operating system (every allocation over its
mmap threshold, at most 32 MiB, is a fresh ``mmap``), so training, which allocates and frees tensors of tens
to hundreds of MB every step, pays a page fault per 4 KiB on every step. Measured here (2-core VM): a fresh
67 MB tensor filled at 2.4 GB/s against 26 GB/s for reused memory, and the autograd force path of
``descriptor=bessel_acsf`` (3 elements, 2 frames) spent 1.98 s instead of 0.36 s in one backward pass.
Raising the mmap threshold to 1 GiB and the trim threshold to 2 GiB keeps freed memory in the process for
reuse (the peak resident memory is unchanged: it is the peak). ``MLPOT_TUNE_MALLOC=0`` switches it off.
The apps call it at start; so does :class:`~mlpot.calculator.MLPotCalculator` when it is made (a calculator call
on n2p2's Cu2S potential, 3 888 atoms, float64: 8.4-9.0 s with glibc's defaults, 3.7-5.0 s tuned), and LAMMPS's
``pair_style mlpot`` does the same in C++ (a chunk of 16 384 atoms: 80 -> 33 µs per atom).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


@functools.cache
def tune_allocator(mmap_threshold: int = 1 << 30, trim_threshold: int = (1 << 31) - 1) -> bool:
    """Keep freed memory for reuse (glibc only; see the module doc). Returns whether it was applied; done once per
    process (every calculator calls it, and finding libc runs ``ldconfig``)."""
    if os.environ.get("MLPOT_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))


def _others_running(samples: int = 7, interval: float = 0.03) -> int:
    """Processes of other programs that want a core now: the kernel's count of runnable threads
    (``procs_running`` in /proc/stat, this process included), the median of a few samples. The load average is
    not used: it lags a minute behind, so a job that has just ended would still count."""
    import statistics
    import time

    counts = []
    for k in range(samples):
        try:
            with open("/proc/stat") as fh:
                counts.extend(int(line.split()[1]) for line in fh if line.startswith("procs_running"))
        except OSError:
            return 0
        if k + 1 < samples:
            time.sleep(interval)
    return max(0, int(statistics.median(counts)) - 1) if counts else 0


def choose_threads(requested=None, processes: int = 1) -> tuple[int, str]:
    """(torch threads for this process, why): ``requested`` when given (``threads=N``), else ``OMP_NUM_THREADS``
    when set, else the cores this process
    may run on (its CPU affinity), shared among the ``processes`` of this job on the machine (DDP ranks), less the
    cores other programs are busy on. On a 2-core machine with one other busy process, 2 threads made a training
    epoch 8.6x and a calculator call 21x slower than 1 (torch's threads wait for each other's time slices)."""
    if requested not in (None, "", "auto"):
        try:
            n = int(requested)
        except (TypeError, ValueError):
            from mlpot.errors import ConfigError

            raise ConfigError("threads", f"must be a positive integer or null (automatic), got {requested!r}") from None
        if n < 1:
            from mlpot.errors import ConfigError

            raise ConfigError("threads", f"must be a positive integer or null (automatic), got {requested!r}")
        return n, f"threads={n}"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:  # the user's (or a scheduler's) choice for this process
        return int(env), f"OMP_NUM_THREADS={env}"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    others = _others_running()
    free = max(1, cores - others)
    n = max(1, min(cores, free) // max(1, int(processes)))
    return n, (f"{cores} core(s) available, {others} busy with other work, {processes} process(es) of this job; "
               "threads=N to choose")


def set_threads(requested=None, processes: int = 1) -> int:
    """Apply :func:`choose_threads` to torch (intra-op threads) and log it; returns the number."""
    import logging

    import torch

    n, why = choose_threads(requested, processes)
    torch.set_num_threads(n)
    logging.getLogger("mlpot").info("torch threads: %d (%s)", n, why)
    return n


def setup_process(threads=None, processes: int = 1) -> None:
    """What every app does first: keep freed memory for reuse (:func:`tune_allocator`) and choose the torch
    threads (:func:`set_threads`)."""
    tune_allocator()
    set_threads(threads, processes)


__all__ = ["tune_allocator", "choose_threads", "set_threads", "setup_process"]
