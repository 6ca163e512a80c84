"""IPF raking against hand-computed tables, convergence, tempering, trimming, ESS and PMI."""
import math

import numpy as np
import pytest

from rhizome.curate.ipf import (
    NONE, OTHER, cooccurrence, effective_sample_size, entropy, membership, rake, tempered_targets,
    weigh_examples,
)


def table_margins(shape, row_targets, col_targets):
    """Each cell of an r x c table is one 'example' belonging to its row and its column."""
    rows, cols = shape
    cells = [(i, j) for i in range(rows) for j in range(cols)]
    A_rows = membership([[f"r{i}"] for i, _ in cells], [f"r{i}" for i in range(rows)])
    A_cols = membership([[f"c{j}"] for _, j in cells], [f"c{j}" for j in range(cols)])
    return [(A_rows, np.asarray(row_targets, float)), (A_cols, np.asarray(col_targets, float))]


def test_2x2_matches_closed_form():
    # Seed [[1, 2], [3, 4]] raked to rows (5, 5), cols (5, 5). IPF keeps the odds ratio 1*4/(2*3) = 2/3,
    # so the fit is [[a, 5-a], [5-a, a]] with a / (5 - a) = sqrt(2/3).
    margins = table_margins((2, 2), [5, 5], [5, 5])
    result = rake(margins, np.array([1.0, 2.0, 3.0, 4.0]), max_iter=500, tol=1e-10)
    r = math.sqrt(2 / 3)
    a = 5 * r / (1 + r)
    assert result.converged
    np.testing.assert_allclose(result.weights, [a, 5 - a, 5 - a, a], rtol=1e-8)
    assert a == pytest.approx(2.24745, abs=1e-5)


def test_3x3_first_sweep_by_hand():
    # Seed [[1,2,1],[2,1,1],[1,1,2]] (row sums 4, 4, 4); rows to (8, 4, 12) scales rows by 2, 1, 3:
    # [[2,4,2],[2,1,1],[3,3,6]], column sums 7, 8, 9; columns to (8, 8, 8) scales by 8/7, 1, 8/9.
    seed = np.array([1, 2, 1, 2, 1, 1, 1, 1, 2], dtype=float)
    margins = table_margins((3, 3), [8, 4, 12], [8, 8, 8])
    one = rake(margins, seed, max_iter=1, tol=0.0)
    expected = [16 / 7, 4, 16 / 9, 16 / 7, 1, 8 / 9, 24 / 7, 3, 48 / 9]
    np.testing.assert_allclose(one.weights, expected, rtol=1e-12)
    assert one.iterations == 1 and not one.converged


def test_3x3_converged_fit_keeps_cross_ratios_and_meets_margins():
    seed = np.array([1, 2, 1, 2, 1, 1, 1, 1, 2], dtype=float)
    margins = table_margins((3, 3), [8, 4, 12], [8, 8, 8])
    fit = rake(margins, seed, max_iter=1000, tol=1e-9)
    x = fit.weights.reshape(3, 3)
    assert fit.converged
    np.testing.assert_allclose(x.sum(axis=1), [8, 4, 12], rtol=1e-8)
    np.testing.assert_allclose(x.sum(axis=0), [8, 8, 8], rtol=1e-8)
    # The defining property of the IPF solution: the seed's cross-product ratios survive.
    assert x[0, 0] * x[1, 1] / (x[0, 1] * x[1, 0]) == pytest.approx(1 * 1 / (2 * 2), rel=1e-7)
    assert x[1, 1] * x[2, 2] / (x[1, 2] * x[2, 1]) == pytest.approx(1 * 2 / (1 * 1), rel=1e-7)


def test_3x3_uniform_seed_gives_independence():
    margins = table_margins((3, 3), [10, 20, 30], [30, 20, 10])
    fit = rake(margins, np.ones(9), max_iter=100, tol=1e-12)
    np.testing.assert_allclose(fit.weights.reshape(3, 3), np.outer([10, 20, 30], [30, 20, 10]) / 60, rtol=1e-9)


def test_fractional_membership_converges_monotonically():
    rng = np.random.default_rng(0)
    themes = ["a", "b", "c", "d", "e"]
    labels = [list(rng.choice(themes, size=rng.integers(1, 4), replace=False, p=[.5, .2, .15, .1, .05]))
              for _ in range(400)]
    A = membership(labels, themes)
    np.testing.assert_allclose(np.asarray(A.sum(axis=1)).ravel(), 1.0)  # shares partition each example
    found = np.asarray(A.sum(axis=0)).ravel()
    target = tempered_targets(found, 0.3, 400.0)
    fit = rake([(A, target)], max_iter=500, tol=1e-6)
    assert fit.converged and fit.max_error <= 1e-6
    np.testing.assert_allclose(A.T @ fit.weights, target, rtol=1e-5)
    assert all(later <= earlier + 1e-12 for earlier, later in zip(fit.history, fit.history[1:]))


def test_tempered_targets_interpolate_between_found_and_uniform():
    found = np.array([80.0, 15.0, 5.0, 0.0])
    np.testing.assert_allclose(tempered_targets(found, 1.0, 100), found)
    np.testing.assert_allclose(tempered_targets(found, 0.0, 100), [100 / 3] * 3 + [0])
    half = tempered_targets(found, 0.5, 100)
    np.testing.assert_allclose(half[:3] / half[:3].sum(), np.sqrt(found[:3]) / np.sqrt(found[:3]).sum())


def test_bounded_rake_respects_band_and_stops_when_targets_are_out_of_reach():
    labels = [["big"]] * 95 + [["rare"]] * 5
    A = membership(labels, ["big", "rare"])
    fit = rake([(A, np.array([50.0, 50.0]))], max_iter=1000, tol=1e-3, band=(0.5, 3.0))
    assert fit.weights.min() >= 0.5 - 1e-12 and fit.weights.max() <= 3.0 + 1e-12
    assert fit.weights[-1] == pytest.approx(3.0)  # rare examples pushed to the cap
    assert fit.weights[0] == pytest.approx(50 / 95)  # the big theme's total is still met
    # The band makes 50/50 unreachable: reported, not hidden, and found out in a few dozen sweeps.
    assert not fit.converged and fit.stalled and fit.max_error == pytest.approx(1 - 15 / 50)
    assert fit.iterations < 50


def test_contradictory_margins_stall_with_the_closest_weights():
    # Examples 0 and 1 are the only members of theme x and of source s; x asks for 10, s for 2.
    themes = membership([["x"], ["x"], ["y"], ["y"]], ["x", "y"])
    sources = membership([["s"], ["s"], ["t"], ["t"]], ["s", "t"])
    fit = rake([(themes, np.array([10.0, 2.0])), (sources, np.array([2.0, 10.0]))], max_iter=5000, tol=1e-6)
    assert fit.stalled and not fit.converged and fit.iterations < 100
    assert fit.max_error == pytest.approx(min(fit.history))  # the best sweep's weights are returned
    assert np.isfinite(fit.weights).all() and (fit.weights > 0).all()


def test_ess_and_entropy():
    assert effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert effective_sample_size(np.array([3.0, 1.0])) == pytest.approx(16 / 10)
    assert entropy(np.array([0.25] * 4)) == (pytest.approx(2.0), pytest.approx(1.0))
    assert entropy(np.array([1.0, 0.0]))[0] == pytest.approx(0.0)


def test_weigh_examples_balances_skewed_themes():
    labels = [["garden"]] * 60 + [["bread"]] * 30 + [["chess"]] * 10 + [[]] * 2
    sources = ["chatgpt", "pdf"] * 51  # independent of themes, so both margins can be met
    w, report = weigh_examples(labels, sources, max_themes=10, theme_temperature=0.0, source_temperature=1.0,
                               w_min=0.2, w_max=5.0, max_iter=300, tol=1e-4)
    assert w.mean() == pytest.approx(1.0, abs=0.05) and w.min() >= 0.2 and w.max() <= 5.0
    after = report["themes_after"]["shares"]
    assert after["garden"] == pytest.approx(after["chess"], rel=0.02)  # alpha 0: uniform over named themes
    assert report["themes_after"]["normalized_entropy"] > report["themes_before"]["normalized_entropy"]
    assert NONE in report["theme_targets"] and report["ess"] < 102
    assert report["converged"] and report["max_marginal_error"] <= 1e-4


def test_membership_pools_unknown_and_missing():
    A = membership([["x", "zzz"], []], ["x", OTHER, NONE])
    np.testing.assert_allclose(A.toarray(), [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])


def test_cooccurrence_pmi_by_hand():
    out = cooccurrence([["a", "b"], ["a", "b"], ["c"], ["c"]], ["a", "b", "c"])
    assert out["counts"][0][1] == 2 and out["counts"][0][0] == 2
    assert out["pmi"][0][1] == pytest.approx(1.0)  # log2(0.5 / (0.5 * 0.5))
    assert out["pmi"][0][2] is None  # never together
