"""Is one system's WER really lower than another's on the same test set, and how precise is a WER?

The paper compares Zipper with the single-decoder (vocabulary-expansion) baseline per cell of its
data-efficiency study with a Wilcoxon signed-rank test on per-utterance WER; a small test set, or a few
utterances with many errors, can make a difference of several WER points mean nothing.  Two tools:

  * `paired_wilcoxon`: both systems scored on the same utterances, the test asks whether the per-utterance
    differences are centred on zero.  It is paired (each utterance is its own control, so the variation between
    easy and hard utterances cancels) and uses ranks (one garbage hypothesis with 40 insertions counts as one
    large difference, not as 40 points of WER).
  * `bootstrap_wer_interval`: a 95 % interval on a corpus-level WER, resampling utterances (the unit the test
    set was drawn in) with replacement and recomputing total errors / total reference words each time.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import rankdata, wilcoxon

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
ALPHA = 0.05  # significance level of the study table, and 1 - the coverage of its intervals
_CHUNK = 100  # resamples drawn at once (bounds memory for large test sets)


def paired_wilcoxon(per_utt_a: Sequence[float], per_utt_b: Sequence[float]) -> tuple[float, float, int]:
    """Two-sided Wilcoxon signed-rank test of system A against system B on the same utterances.

    per_utt_a, per_utt_b: per-utterance WERs (errors / reference words), in the same utterance order.
    Returns (statistic, p, direction):
      statistic: min(R+, R-), the smaller of the rank sums of the positive and negative differences A - B;
      p: the two-sided p-value;
      direction: -1 when A's WERs tend to be lower (R+ < R-), +1 when higher, 0 when neither.

    Zero differences (both systems equally wrong on an utterance) say nothing about which is better and are
    dropped before ranking (Wilcoxon's original treatment, scipy's zero_method="wilcox"); tied absolute
    differences get their average rank.  The p-value is exact (all 2^n sign assignments, ties included) for
    up to 50 non-zero differences and from the normal approximation above that (scipy's method="auto").
    When no difference is left (identical per-utterance WERs, or no utterances) the systems are
    indistinguishable: (0.0, 1.0, 0), without calling scipy (which would warn about dividing by zero).
    """
    a = np.asarray(per_utt_a, dtype=float)
    b = np.asarray(per_utt_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired test needs two equally long lists of per-utterance values, got {a.shape} and "
                         f"{b.shape}")
    d = a - b
    d = d[d != 0]
    if d.size == 0:
        return 0.0, 1.0, 0
    ranks = rankdata(np.abs(d))
    r_plus, r_minus = float(ranks[d > 0].sum()), float(ranks[d < 0].sum())
    result = wilcoxon(d, zero_method="wilcox", alternative="two-sided", method="auto")
    direction = -1 if r_plus < r_minus else (1 if r_plus > r_minus else 0)
    return float(result.statistic), min(float(result.pvalue), 1.0), direction


def bootstrap_wer_interval(errors: Sequence[int], ref_words: Sequence[int], n: int = BOOTSTRAP_RESAMPLES,
                           seed: int = BOOTSTRAP_SEED, alpha: float = ALPHA) -> tuple[float, float]:
    """Percentile-bootstrap (1 - alpha) interval, in %, of the corpus-level WER of per-utterance counts.

    Each of the n resamples draws as many utterances as there are, with replacement, and computes
    100 * sum(errors) / sum(ref_words) over them, the same corpus-level WER as result.txt (not a mean of
    per-utterance WERs, which would give a 2-word utterance the weight of a 40-word one).  The interval is
    the alpha/2 and 1 - alpha/2 quantiles of those n WERs.  Deterministic for a given seed; a set with one
    utterance, or with the same WER on every utterance, gives a zero-width interval.
    """
    e = np.asarray(errors, dtype=np.int64)
    w = np.asarray(ref_words, dtype=np.int64)
    if e.shape != w.shape or e.ndim != 1 or e.size == 0:
        raise ValueError(f"need equally long, non-empty lists of errors and reference words, got {e.shape} and "
                         f"{w.shape}")
    if (w <= 0).any():
        raise ValueError(f"utterance {int(np.argmax(w <= 0))} has no reference words: its WER is undefined")
    if not 0 < alpha < 1 or n < 1:
        raise ValueError(f"need 0 < alpha < 1 and n >= 1, got alpha={alpha}, n={n}")
    rng = np.random.default_rng(seed)
    wers = np.empty(n)
    for start in range(0, n, _CHUNK):
        rows = min(_CHUNK, n - start)
        idx = rng.integers(0, e.size, size=(rows, e.size))
        wers[start:start + rows] = 100.0 * e[idx].sum(axis=1) / w[idx].sum(axis=1)
    low, high = np.quantile(wers, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)
