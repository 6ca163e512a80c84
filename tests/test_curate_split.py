"""Split: fractions, stratification, groups kept whole, determinism."""
from collections import Counter

import numpy as np

from rhizome.curate.split import assign_splits, split_summary, stratum


def make(n_per_stratum):
    strata, groups = [], []
    for s, (theme, source, n) in enumerate(n_per_stratum):
        for _ in range(n):
            strata.append(stratum([theme, "x"], source))
            groups.append(-1)
    return np.array(groups), strata


def test_fractions_and_strata_are_respected():
    groups, strata = make([("garden", "chatgpt", 500), ("bread", "pdf", 300), ("chess", "chatgpt", 200)])
    split = assign_splits(groups, strata, (0.8, 0.1, 0.1), seed=3)
    assert Counter(split.tolist()) == {0: 800, 1: 100, 2: 100}
    for key in set(strata):
        idx = [i for i, s in enumerate(strata) if s == key]
        share = Counter(split[idx].tolist())
        assert abs(share[0] / len(idx) - 0.8) < 0.01 and abs(share[1] / len(idx) - 0.1) < 0.01


def test_groups_never_straddle_and_seed_is_deterministic():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 60, size=400)  # 60 near-duplicate neighbourhoods
    strata = [stratum(["t%d" % (g % 5)], "chatgpt") for g in groups]
    a = assign_splits(groups, strata, (0.8, 0.1, 0.1), seed=7)
    for g in set(groups.tolist()):
        assert len(set(a[groups == g].tolist())) == 1
    assert (a == assign_splits(groups, strata, (0.8, 0.1, 0.1), seed=7)).all()
    assert not (a == assign_splits(groups, strata, (0.8, 0.1, 0.1), seed=8)).all()


def test_tiny_inputs_fill_train_first():
    assert assign_splits(np.array([-1]), [("a", "s")], (0.8, 0.1, 0.1), 0).tolist() == [0]
    ten = assign_splits(np.full(10, -1), [("a", "s")] * 10, (0.8, 0.1, 0.1), 0)
    assert Counter(ten.tolist()) == {0: 8, 1: 1, 2: 1}
    no_test = assign_splits(np.full(10, -1), [("a", "s")] * 10, (0.9, 0.1, 0.0), 0)
    assert 2 not in no_test.tolist()


def test_summary_counts_sources_and_themes():
    split = np.array([0, 0, 1, 2])
    strata = [("garden", "chatgpt"), ("bread", "pdf"), ("garden", "pdf"), ("", "chatgpt")]
    out = split_summary(split, strata)
    assert out["train"] == {"count": 2, "sources": {"chatgpt": 1, "pdf": 1}, "dominant_themes": {"garden": 1, "bread": 1}}
    assert out["test"]["dominant_themes"] == {"(none)": 1}
