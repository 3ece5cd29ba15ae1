"""The exact one-sided Mann-Whitney U test that `lmbench compare` and the report use.

scipy.stats.mannwhitneyu(x, y, alternative="greater", method="exact") computes the same p
(tests/test_compare.py checks it on random samples, ties included), at ~2 ms a call for
its input handling: `lmbench calibrate` makes thousands. Like scipy's exact method, ties
count one half in U and the null distribution is the tie-free one.
"""
from __future__ import annotations

import functools
from math import comb


@functools.lru_cache(maxsize=None)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """counts[u]: how many of the C(m + n, m) orderings of m x's and n y's give U_x = u
    (U_x: the pairs with the x above the y), u = 0 .. m * n."""
    if m == 0 or n == 0:
        return (1,)
    # the largest value is an x (above all n y's: u - n from the others) or a y (above none)
    with_x, with_y = _u_counts(m - 1, n), _u_counts(m, n - 1)
    return tuple((with_x[u - n] if 0 <= u - n < len(with_x) else 0) + (with_y[u] if u < len(with_y) else 0)
                 for u in range(m * n + 1))


def p_greater(x: list[float], y: list[float]) -> float:
    """Exact one-sided p-value that the values in `x` tend to be larger than those in `y`:
    P(U >= U_x) when both are drawn from one distribution."""
    u = sum((a > b) + 0.5 * (a == b) for a in x for b in y)
    counts = _u_counts(len(x), len(y))
    return min(1.0, sum(counts[int(u):]) / comb(len(x) + len(y), len(x)))
