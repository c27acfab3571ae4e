"""Progress of long data passes (conversion, Jacobian caching, statistics): a bar on a terminal, log lines
elsewhere.

On a terminal (stderr is a TTY) a tqdm bar shows the count, its rate (e.g. frames/s) and the ETA. In a log
file or a pipe there is no bar (no carriage-return litter): a line is logged every ``interval`` seconds
with the same figures, and one at the end, so nothing runs for minutes in silence.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("mlpot")


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """``update(count=..., value=...)``: ``count`` items done (frames), ``value`` the position towards
    ``total`` (e.g. bytes read) when the ETA is measured in something else than the count."""

    def __init__(self, desc: str, total: float | None = None, unit: str = "frames", count_unit: str | None = None,
                 interval: float = 15.0, enabled: bool = True):
        self.desc, self.total, self.unit = desc, total, unit
        self.count_unit = count_unit or unit
        self.count, self.value = 0, 0.0
        self.interval, self.enabled = float(interval), bool(enabled)
        self.t0 = self._last = time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", dynamic_ncols=True,
                            leave=False, file=sys.stderr)

    def update(self, count: int = 1, value: float | None = None) -> None:
        self.count += count
        step = self.count if value is None else value
        if self.bar is not None:
            self.bar.update(step - self.value)
            if self.count_unit != self.unit:
                self.bar.set_postfix_str(f"{self.count} {self.count_unit}, {self.rate():.1f} {self.count_unit}/s",
                                         refresh=False)
        self.value = step
        now = time.perf_counter()
        if self.bar is None and self.enabled and now - self._last >= self.interval:
            self._last = now
            log.info("%s", self.line())

    def rate(self) -> float:
        return self.count / max(time.perf_counter() - self.t0, 1e-9)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        text = f"{self.desc}: {self.count} {self.count_unit} in {_fmt_seconds(elapsed)} ({self.rate():.1f}/s)"
        if self.total and self.value:
            frac = min(self.value / self.total, 1.0)
            eta = elapsed * (1 - frac) / max(frac, 1e-9)
            text += f", {100 * frac:.0f} %, ETA {_fmt_seconds(eta)}"
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.enabled:
            elapsed = time.perf_counter() - self.t0
            log.info("%s: %d %s in %.1f s (%.1f/s)", self.desc, self.count, self.count_unit, elapsed, self.rate())
            self.enabled = False


__all__ = ["Progress"]
