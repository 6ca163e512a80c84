"""Dedup: exact hashing, semantic dedup on real embeddings, the greedy rule, HNSW at scale."""
import numpy as np

from rhizome.curate import dedup as dd
from rhizome.curate.build import example_vectors
from rhizome.curate.dedup import deduplicate, exact_key
from rhizome.records import Example, Message


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_exact_key_ignores_case_punctuation_spacing():
    assert exact_key("Hello,  World!") == exact_key("hello world")
    assert exact_key("hello world") != exact_key("hello there world")


def test_semantic_dedup_keeps_better_member_on_real_embeddings():
    from rhizome.models import load_embedder

    pairs = [
        ("How do I start a compost pile?", "Mix green kitchen scraps with brown dry leaves, keep the pile moist and turn it weekly."),
        ("How do I start a compost pile ?", "Mix green kitchen scraps with brown dry leaves, keep the pile moist, and turn it every week."),
        ("how do I start a COMPOST pile", "Mix green kitchen scraps with brown dry leaves keep the pile moist and turn it weekly"),
        ("How do I start a compost pile?", "Buy a closed plastic bin with a lid so rats cannot get in, and place it in partial shade."),
        ("What is a good bread flour?", "Use a strong flour with twelve to thirteen percent protein for a chewy crumb."),
    ]
    model = load_embedder()
    examples = [Example(str(i), [Message("user", q), Message("assistant", a)]) for i, (q, a) in enumerate(pairs)]
    p = model.encode([q for q, _ in pairs], normalize_embeddings=True)
    r = model.encode([a for _, a in pairs], normalize_embeddings=True)
    v = example_vectors(examples, p, r)  # the build's own combination of the cached vectors
    texts = [q + "\n" + a for q, a in pairs]
    quality = np.array([0.8, 0.9, 0.5, 0.8, 0.8])
    res = deduplicate(texts, v, quality, np.zeros(5, bool), threshold=0.95, group_threshold=0.9)
    assert res.reason == ["near_duplicate", None, "exact_duplicate", None, None]
    assert res.dup_of[0] == 1 and res.dup_of[2] == 1  # the exact copy of a removed example points to the kept one
    assert res.similarity[0] >= 0.95
    report = res.groups_report(["a", "b", "c", "d", "e"])
    assert report["groups"] == 1 and report["largest_group"] == 3
    # Same question, different answer: not a duplicate.
    assert res.dup_of[3] == -1
    # A user-approved example is never removed; its twin goes instead.
    prot = deduplicate(texts, v, quality, np.array([True, False, False, False, False]), 0.95, 0.9)
    assert prot.reason[0] is None and prot.reason[1] == "near_duplicate"


def test_greedy_rule_does_not_remove_dissimilar_chain_ends():
    # cos(a, b) = cos(b, c) = 0.96 but cos(a, c) ~ 0.84: a chain, not one group.
    theta = np.arccos(0.96)
    v = unit([[1, 0, 0], [np.cos(theta), np.sin(theta), 0], [np.cos(2 * theta), np.sin(2 * theta), 0]])
    texts = ["a", "b", "c"]
    best_end = deduplicate(texts, v, np.array([0.9, 0.5, 0.4]), np.zeros(3, bool), 0.95, 0.9)
    assert best_end.reason == [None, "near_duplicate", None]  # a kept, b removed, c stays
    best_mid = deduplicate(texts, v, np.array([0.5, 0.9, 0.4]), np.zeros(3, bool), 0.95, 0.9)
    assert best_mid.reason == ["near_duplicate", None, "near_duplicate"]


def test_hnsw_path_finds_planted_copies_without_false_removals(monkeypatch):
    monkeypatch.setattr(dd, "FLAT_MAX", 1000)  # take the HNSW branch at a test-sized n
    rng = np.random.default_rng(1)
    n, planted, dim = 2000, 300, 384
    base = unit(rng.standard_normal((n, dim)))
    src = rng.choice(n, planted, replace=False)
    near = unit(base[src] + 0.01 * rng.standard_normal((planted, dim)))  # cosine ~0.98
    loose = unit(base[src[:50]] + 0.02 * rng.standard_normal((50, dim)))  # cosine ~0.93: same group, kept
    vecs = np.vstack([base, near, loose]).astype(np.float32)
    texts = [f"t{i}" for i in range(len(vecs))]
    quality = np.r_[np.ones(n), np.full(planted + 50, 0.5)]
    res = deduplicate(texts, vecs, quality, np.zeros(len(vecs), bool), 0.95, 0.9)
    removed = np.flatnonzero(res.dup_of >= 0)
    assert set(removed) == set(range(n, n + planted))  # every planted copy, nothing else
    assert (res.dup_of[n : n + planted] == src).all()
    looseness = res.group[n + planted :]
    assert (looseness == res.group[src[:50]]).all() and (looseness >= 0).all()  # kept together for the split


def test_typo_copies_are_caught_by_their_words():
    from rhizome.models import load_embedder

    question = "What is the best way to handle exposure triangle if raw files is getting in the way?"
    answer = ("The trade-off is that shutter speed takes patience while aperture gives quicker feedback. "
              "The common advice about exposure triangle is too strict; histogram is more forgiving than it sounds. "
              "Most people find that exposure improves once they track it for five weeks.")
    typo = answer.replace("exposure triangle", "epxosure triangle").replace("sounds", "sounsd")
    other = ("Shoot in raw files whenever light is difficult, then fix the histogram at home; "
             "the exposure triangle matters less once you bracket three frames.")
    replies = [answer, typo, other]
    examples = [Example(str(i), [Message("user", question), Message("assistant", a)]) for i, a in enumerate(replies)]
    model = load_embedder()
    p = model.encode([question] * 3, normalize_embeddings=True)
    r = model.encode(replies, normalize_embeddings=True)
    v = example_vectors(examples, p, r)
    assert float(v[0] @ v[1]) < 0.95  # the embedder alone would miss this copy
    res = deduplicate([question + "\n" + a for a in replies], v, np.array([0.9, 0.8, 0.7]), np.zeros(3, bool), 0.95, 0.9)
    assert res.reason == [None, "near_duplicate", None]
