"""Themes: candidate phrases, junk suppression, TF-IDF, KeyBERT on cached vectors, hierarchy."""
import numpy as np

from rhizome.curate.lexicon import candidate_phrases
from rhizome.curate.themes import extract_themes, keybert_ranking, count_candidates, theme_hierarchy

DOCS = [
    "Gradient descent lowers the loss step by step; the learning rate sets the step size.",
    "Stochastic gradient descent uses small batches, so a smaller learning rate keeps it stable.",
    "My sourdough starter needs flour and water twice a day before the bread rises.",
    "A lively sourdough starter makes the bread rise; feed it flour every morning.",
    "Running intervals builds speed; easy runs between them help recovery.",
]


def test_candidates_skip_junk_stop_words_and_punctuation():
    found = candidate_phrases("I like it, time flies. Really, the state of the art gradient descent works!")
    assert "gradient descent" in found and "gradient" in found
    assert not {"like", "time", "really", "state art", "flies state", "works"} & set(found)
    assert candidate_phrases("It is what it is, you know, really.") == []


def test_inflections_merge_under_the_usual_form():
    counts, vocab = count_candidates(["The runs were long.", "Easy runs help.", "A run before work."])
    assert "runs" in vocab and "run" not in vocab  # one candidate, shown as its most frequent form
    assert counts[:, list(vocab).index("runs")].sum() == 3


def test_tfidf_themes_and_hierarchy():
    lists = extract_themes(DOCS, np.zeros((5, 384), np.float32), lambda p: None, "tfidf", 3)
    assert "gradient descent" in lists[0] + lists[1]
    assert any("sourdough" in t for t in lists[2] + lists[3])
    assert not any(t in ("like", "time") for ts in lists for t in ts)
    tree = theme_hierarchy([["gradient descent", "stochastic gradient descent"], ["gradient descent"], ["descent"]])
    assert tree["descent"]["phrases"] == {"gradient descent": 2, "stochastic gradient descent": 1}
    assert tree["descent"]["count"] == 4


def test_keybert_ranks_with_the_supplied_cached_vectors():
    from rhizome.models import load_embedder

    model = load_embedder()
    mixed = ["Sourdough starter and gradient descent both need patience and the right learning rate."]
    counts, vocab = count_candidates(mixed)
    phrase_vecs = model.encode(list(vocab), normalize_embeddings=True)
    bread, ml = model.encode(["baking sourdough bread", "optimising neural networks"], normalize_embeddings=True)
    as_bread = keybert_ranking(counts, vocab, bread[None, :], phrase_vecs)[0]
    as_ml = keybert_ranking(counts, vocab, ml[None, :], phrase_vecs)[0]
    # Candidates are scored against the document vector we give, not a fresh embedding.
    assert "sourdough" in as_bread[0]
    assert any(w in as_ml[0] for w in ("gradient", "descent", "learning"))


def test_keybert_ranking_matches_the_keybert_library():
    from keybert import KeyBERT
    from sklearn.feature_extraction.text import CountVectorizer

    from rhizome.models import load_embedder

    model = load_embedder()
    counts, vocab = count_candidates(DOCS)
    doc_vecs = model.encode(DOCS, normalize_embeddings=True)
    phrase_vecs = model.encode(list(vocab), normalize_embeddings=True)
    # KeyBERT's vectoriser over the same candidates (vocabulary given, counts recomputed by it).
    vectorizer = CountVectorizer(vocabulary=list(vocab), ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b",
                                 lowercase=True)
    expected = KeyBERT(model=model).extract_keywords(DOCS, vectorizer=vectorizer, top_n=8,
                                                     doc_embeddings=doc_vecs, word_embeddings=phrase_vecs)
    ours = keybert_ranking(vectorizer.transform(DOCS).tocsr(), vocab, doc_vecs, phrase_vecs)
    assert ours == [[phrase for phrase, _ in row] for row in expected]
    assert all(ours)


def test_hybrid_themes_through_the_embedding_cache(ws):
    from rhizome.memory import EmbeddingCache

    cache = EmbeddingCache(ws)
    doc_vecs = cache.embed(DOCS)
    before = cache.computed
    lists = extract_themes(DOCS, doc_vecs, cache.embed, "hybrid", 2)
    assert cache.computed > before  # only the candidate phrases were new; the documents came from the cache
    assert all(len(ts) == 2 for ts in lists)
    assert extract_themes(["It is what it is.", "So be it."], cache.embed(["x", "y"]), cache.embed, "hybrid",
                          2) == [[], []]
