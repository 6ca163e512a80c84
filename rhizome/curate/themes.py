"""Themes: what each example is about, from TF-IDF terms and KeyBERT keyphrases.

Candidates are the corpus's content words and adjacent pairs of them (never across punctuation
or stop words; junk such as "like" or "time" removed, see `lexicon.py`), counted once. TF-IDF
ranks them by distinctiveness; KeyBERT's method ranks them by cosine to the example, using the
cached example vectors and cached phrase vectors (nothing is embedded or tokenised twice).
`hybrid` fuses both rankings by reciprocal rank. Themes are normalised (lower case, singular
head) and a hierarchy phrase -> head word ("gradient descent" -> "descent") is recorded.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np
from scipy.sparse import csr_matrix, diags
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

from .lexicon import PhraseAnalyzer, head_word

MAX_CANDIDATES = 4000
SCORE_BLOCK = 65_536
RANK_DEPTH = 8
PHRASE_BOOST = 1.2


def count_candidates(texts: list[str]) -> tuple[csr_matrix, np.ndarray]:
    """Document x candidate-phrase counts and each candidate's usual written form."""
    n = len(texts)
    analyzer = PhraseAnalyzer()
    # Shared phrases make themes that can be balanced; past ~50 examples a phrase seen once is noise.
    vectorizer = CountVectorizer(analyzer=analyzer, min_df=2 if n >= 50 else 1,
                                 max_df=0.5 if n >= 20 else 1.0, max_features=MAX_CANDIDATES)
    try:
        counts = vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # nothing but stop words or symbols: a theme-less corpus
        return csr_matrix((n, 0)), np.array([], dtype=object)
    vocab = np.array([analyzer.display(k) for k in vectorizer.get_feature_names_out()], dtype=object)
    # A word pair seen in one document only is usually an accident of wording ("descent lowers"),
    # a pair seen in several is a phrase ("gradient descent").
    df = np.diff(counts.tocsc().indptr)
    keep = (df >= 2) | np.array([" " not in v for v in vocab], dtype=bool) | (n == 1)
    return counts[:, np.flatnonzero(keep)].tocsr(), vocab[keep]


def top_per_row(matrix: csr_matrix, vocab: np.ndarray, depth: int) -> list[list[str]]:
    """The `depth` highest-scoring phrases of each row of a sparse score matrix."""
    out = []
    for row in range(matrix.shape[0]):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        best = matrix.indices[lo:hi][np.argsort(-matrix.data[lo:hi], kind="stable")[:depth]]
        out.append([vocab[j] for j in best])
    return out


def tfidf_ranking(counts: csr_matrix, vocab: np.ndarray) -> list[list[str]]:
    """Distinctive phrases per document, among phrases shared by at least two documents: on its
    own TF-IDF favours one-off words, which name nothing worth balancing."""
    weights = TfidfTransformer(sublinear_tf=True).fit_transform(counts).tocsc()
    if counts.shape[0] > 1:
        shared = np.diff(counts.tocsc().indptr) >= 2
        weights = weights[:, np.flatnonzero(shared)]
        vocab = vocab[shared]
    # A shared two-word phrase says more than either word: "gradient descent" over "descent".
    boost = np.where([" " in v for v in vocab], PHRASE_BOOST, 1.0)
    return top_per_row((weights @ diags(boost)).tocsr(), vocab, RANK_DEPTH)


def keybert_ranking(counts: csr_matrix, vocab: np.ndarray, doc_vecs: np.ndarray,
                    phrase_vecs: np.ndarray) -> list[list[str]]:
    """KeyBERT's keyphrases: each document's candidate phrases ranked by cosine to the document.

    The same scores as `KeyBERT.extract_keywords(docs, doc_embeddings=..., word_embeddings=...)`
    (a test checks it), computed in one vectorised pass: KeyBERT's own loop calls scikit-learn
    once per document, whose input checks made up ~80% of the themes stage at 25,000 examples.
    """
    docs = _unit_rows(doc_vecs)
    phrases = _unit_rows(phrase_vecs)
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    sims = np.empty(counts.nnz, dtype=np.float32)
    for lo in range(0, counts.nnz, SCORE_BLOCK):  # blocks keep the gathered vectors small
        hi = lo + SCORE_BLOCK
        sims[lo:hi] = np.einsum("ij,ij->i", docs[rows[lo:hi]], phrases[counts.indices[lo:hi]])
    scores = csr_matrix((sims, counts.indices, counts.indptr), shape=counts.shape)
    return top_per_row(scores, vocab, RANK_DEPTH)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def fuse(rankings: list[list[str]], n: int, df: dict[str, int] | None = None) -> list[str]:
    """Top `n` themes by reciprocal rank fusion, skipping phrases that overlap a chosen one.

    With document frequencies `df`, scores are scaled by log(1 + df): between two equally good
    descriptions of an example, the one other examples share makes the theme that can be balanced.
    """
    scores: Counter = Counter()
    for ranking in rankings:
        for rank, phrase in enumerate(ranking, start=1):
            scores[phrase] += 1.0 / (60 + rank)
    if df is not None:
        scores = Counter({p: s * np.log1p(df.get(p, 1)) for p, s in scores.items()})
    chosen: list[str] = []
    for theme, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])):
        words = set(theme.split())
        if not any(words & set(c.split()) for c in chosen):
            chosen.append(theme)
        if len(chosen) == n:
            break
    return chosen


def extract_themes(texts: list[str], doc_vecs: np.ndarray, embed: Callable[[list[str]], np.ndarray],
                   method: str, per_example: int) -> list[list[str]]:
    """Themes of each text. `embed` maps phrases to cached vectors (used by keybert/hybrid)."""
    counts, vocab = count_candidates(texts)
    if counts.shape[1] == 0:
        return [[] for _ in texts]
    tfidf = tfidf_ranking(counts, vocab) if method in ("tfidf", "hybrid") else None
    keyb = None
    if method in ("keybert", "hybrid"):
        keyb = keybert_ranking(counts, vocab, doc_vecs, embed(list(vocab)))
    lists = [r for r in (tfidf, keyb) if r is not None]
    df = dict(zip(vocab, np.diff(counts.tocsc().indptr).tolist()))
    return [fuse([r[i] for r in lists], per_example, df) for i in range(len(texts))]


def theme_hierarchy(theme_lists: list[list[str]]) -> dict[str, dict]:
    """Head word -> its phrases and how many examples carry each (multi-word phrases only)."""
    counts = Counter(t for themes in theme_lists for t in themes)
    tree: dict[str, dict] = {}
    for theme, count in counts.items():
        head = head_word(theme)
        node = tree.setdefault(head, {"count": 0, "phrases": {}})
        node["count"] += count
        if theme != head:
            node["phrases"][theme] = count
    return {h: n for h, n in sorted(tree.items(), key=lambda kv: -kv[1]["count"]) if n["phrases"]}


def theme_counts(theme_lists: list[list[str]]) -> Counter:
    return Counter(t for themes in theme_lists for t in themes)
