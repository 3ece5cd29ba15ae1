"""When is "A is faster than B" beyond noise? One rule for every sentence and plot.

- With >= MIN_RUNS runs per side: a one-sided exact Mann-Whitney U test (as `lmbench compare`
  uses) at p <= ALPHA. With 3 runs per side the smallest p an exact rank test can give is
  1/C(6,3) = 0.05: every run of A above every run of B.
- With fewer runs: only when the ratio of the medians exceeds the machine's run-to-run
  spread: the spread measured on this report's own repeated cells where there are some
  (the median over cells with >= MIN_RUNS runs of max/min - 1), else ASSUMED_SPREAD, and
  the sentence says which.
Otherwise the two are "tied within noise".
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from ..ranks import p_greater

MIN_RUNS = 3
ALPHA = 0.05
# this project's machines vary ±7% run to run when quiet (README); the ratio of two single
# runs can so be off by ~15% with nothing changed
ASSUMED_SPREAD = 0.15


@dataclass(frozen=True)
class Spread:
    value: float
    source: str  # how it was found, for the sentence that uses it


def spread_of(cells_runs: list[list[float]], pair_band: list[float] | None = None) -> Spread:
    """This machine's run-to-run spread: as `lmbench calibrate --save` measured it (the band of
    one run's words/s over another's, `pair_band`), else from this report's cells with enough
    repeats, else the assumed one."""
    if pair_band and len(pair_band) == 2 and 0 < pair_band[0] <= 1 <= pair_band[1]:
        return Spread(max(1 / pair_band[0], pair_band[1]) - 1, "run-to-run spread `lmbench calibrate` measured "
                                                               "on this machine")
    spreads = [max(r) / min(r) - 1 for r in cells_runs if len(r) >= MIN_RUNS and min(r) > 0]
    if spreads:
        return Spread(statistics.median(spreads), f"run-to-run spread of {len(spreads)} repeated cell(s) here")
    return Spread(ASSUMED_SPREAD, "assumed run-to-run spread (no cell here has "
                                  f"{MIN_RUNS}+ runs)")


@dataclass(frozen=True)
class Verdict:
    ratio: float  # median(a) / median(b)
    beyond_noise: bool
    how: str  # "p=0.029, 4 vs 4 runs" / "1 vs 1 run, beyond the ±15% assumed spread" / ...

    def says(self, faster: str, slower: str) -> str:
        """ "A is 1.23× B (how)" or "A and B are tied within noise (how)"."""
        if self.beyond_noise:
            return f"{faster} {self.ratio:.2f}× {slower} ({self.how})"
        return f"{faster} and {slower} tied within noise ({self.ratio:.2f}×; {self.how})"


def compare(a: list[float], b: list[float], spread: Spread) -> Verdict:
    """Is `a` (words/s of each run) faster than `b` beyond noise? (ratio of medians >= 1 expected)"""
    ratio = statistics.median(a) / statistics.median(b)
    runs = f"{len(a)} vs {len(b)} run{'s' * (len(a) + len(b) > 2)}"
    if len(a) >= MIN_RUNS and len(b) >= MIN_RUNS:
        p = p_greater(a, b)
        return Verdict(ratio, bool(p <= ALPHA and ratio > 1), f"{runs}, one-sided Mann–Whitney p={p:.3f}")
    beyond = ratio > 1 + spread.value
    return Verdict(ratio, beyond, f"{runs}: {'beyond' if beyond else 'within'} the ±{spread.value:.0%} "
                                  f"{spread.source}")
