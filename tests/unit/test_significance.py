"""zipper.scoring.significance against values computed by hand (signed-rank statistics and exact p-values by
enumerating sign assignments; bootstrap intervals of sets whose resampled WERs can be listed)."""

from __future__ import annotations

import warnings

import pytest

from zipper.scoring.significance import bootstrap_wer_interval, paired_wilcoxon


def test_wilcoxon_exact_small_case():
    # A - B = 1, -2, 3, 4, 5: ranks 1..5, R+ = 1+3+4+5 = 13, R- = 2, statistic min = 2.
    # Sign assignments (of 2^5 = 32) with R- <= 2: {}, {1}, {2} -> 3; two-sided p = 2 * 3 / 32 = 0.1875.
    a = [0.1, 0.0, 0.3, 0.4, 0.5]
    b = [0.0, 0.2, 0.0, 0.0, 0.0]
    statistic, p, direction = paired_wilcoxon([x * 10 for x in a], [x * 10 for x in b])
    assert statistic == pytest.approx(2.0)
    assert p == pytest.approx(6 / 32)
    assert direction == 1  # A is worse
    # the other way round: same test, opposite direction
    assert paired_wilcoxon([x * 10 for x in b], [x * 10 for x in a]) == pytest.approx((2.0, 6 / 32, -1))


def test_wilcoxon_significant_when_every_utterance_improves():
    # six negative differences: R+ = 0; only the all-negative and all-positive assignments are as extreme,
    # p = 2 / 2^6 = 0.03125 < 0.05
    statistic, p, direction = paired_wilcoxon([0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6])
    assert (statistic, direction) == (0.0, -1)
    assert p == pytest.approx(2 / 64)


def test_wilcoxon_zero_differences_are_dropped_and_ties_share_ranks():
    # a zero difference changes nothing: the same as the 5-utterance case above
    assert paired_wilcoxon([7, 1, -2, 3, 4, 5], [7, 0, 0, 0, 0, 0]) == pytest.approx((2.0, 6 / 32, 1))
    # ties: |d| = 1, 1, 2, 3, 4, 5 -> ranks 1.5, 1.5, 3, 4, 5, 6; R- = 3 (the -2).  Assignments of 2^6 = 64
    # with R- <= 3: {}, {1.5a}, {1.5b}, {1.5a, 1.5b}, {3} -> 5; p = 2 * 5 / 64 = 0.15625
    assert paired_wilcoxon([1, 1, -2, 3, 4, 5], [0] * 6) == pytest.approx((3.0, 10 / 64, 1))


def test_wilcoxon_identical_systems_give_p_one_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert paired_wilcoxon([0.5, 0.0, 1.0], [0.5, 0.0, 1.0]) == (0.0, 1.0, 0)
        assert paired_wilcoxon([], []) == (0.0, 1.0, 0)
    with pytest.raises(ValueError, match="equally long"):
        paired_wilcoxon([1, 2], [1])


def test_bootstrap_interval_by_hand():
    # two utterances of 2 words, 0 and 2 errors: a resample has WER 0 (both the first: 1/4 of the draws),
    # 50 % (one of each: 1/2) or 100 % (1/4): the 95 % interval is [0, 100]
    assert bootstrap_wer_interval([0, 2], [2, 2], n=1000, seed=1) == (0.0, 100.0)
    # corpus-level, not the mean of utterance WERs: 1/1 and 0/9 resampled as (1/1, 0/9) give 10 %, not 50 %;
    # resampled WERs are 100 (1/4 of the draws), 0 (1/4) or 10 (1/2); with alpha = 0.6 the interval is the
    # 30 % and 70 % quantiles, both inside the middle half: [10, 10]
    assert bootstrap_wer_interval([1, 0], [1, 9], n=1000, seed=3, alpha=0.6) == (10.0, 10.0)
    # the same WER everywhere, or one utterance: zero width
    assert bootstrap_wer_interval([1, 2, 3], [10, 20, 30]) == (10.0, 10.0)
    assert bootstrap_wer_interval([3], [4]) == (75.0, 75.0)


def test_bootstrap_interval_is_seeded_and_contains_the_wer():
    errors = [0, 1, 3, 0, 2, 5, 1, 0, 0, 4] * 5
    words = [5, 8, 10, 4, 7, 12, 6, 3, 9, 10] * 5
    wer = 100 * sum(errors) / sum(words)
    low, high = bootstrap_wer_interval(errors, words, n=1000, seed=7)
    assert low < wer < high and high - low < 20
    assert bootstrap_wer_interval(errors, words, n=1000, seed=7) == (low, high)
    assert bootstrap_wer_interval(errors, words, n=1000, seed=8) != (low, high)
    with pytest.raises(ValueError, match="utterance 1 has no reference words"):
        bootstrap_wer_interval([0, 0], [3, 0])
