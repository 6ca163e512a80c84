"""Quality: each named signal, the weighted score, and the threshold on real embeddings."""
import numpy as np
import pytest

from rhizome.curate.quality import (
    WEIGHTS, alpha_signal, coherence_signal, formatting_signal, length_signal, quality_stats, repetition_signal,
    score_examples,
)
from rhizome.records import Example, Message

GOOD_Q = "How do I keep a sourdough starter alive while I am away for two weeks?"
GOOD_A = ("Feed it, let it rise for an hour, then put it in the fridge with a loose lid. It will keep for two "
          "weeks; when you are back, discard half and feed it twice before baking.")


def test_signals_on_crafted_replies():
    assert length_signal(0) == 0 and length_signal(6) == pytest.approx(0.5) and length_signal(12) == 1
    assert length_signal(6500) == pytest.approx(0.5)
    assert alpha_signal("!!!! ???? 1234 5678") == 0 and alpha_signal(GOOD_A) == 1
    assert repetition_signal("buy now " * 20) == 0 and repetition_signal(GOOD_A) == 1
    assert formatting_signal(GOOD_A) == 1
    assert formatting_signal("```python\nprint(1)\n") == pytest.approx(0.6)  # unclosed fence
    assert formatting_signal("<div>Click here</div> &nbsp;") == pytest.approx(0.7)
    assert formatting_signal("THIS IS THE ANSWER AND IT IS VERY IMPORTANT!!!!!!") == pytest.approx(0.5)
    np.testing.assert_allclose(coherence_signal(np.array([-0.2, 0.0, 0.225, 0.9])), [0, 0, 0.5, 1])
    assert sum(WEIGHTS.values()) == pytest.approx(1.0)


def test_scores_separate_good_from_junk_on_real_embeddings():
    from rhizome.models import load_embedder

    replies = [GOOD_A, "asdf asdf asdf asdf asdf asdf asdf asdf asdf asdf", "Buy cheap watches now!!!!!! " * 6]
    examples = [Example(str(i), [Message("user", GOOD_Q), Message("assistant", r)]) for i, r in enumerate(replies)]
    model = load_embedder()
    p = model.encode([GOOD_Q] * 3, normalize_embeddings=True)
    r = model.encode(replies, normalize_embeddings=True)
    scores, signals = score_examples(examples, p, r)
    assert scores[0] > 0.85 and scores[1] < 0.46 and scores[2] < 0.46
    assert signals["coherence"][0] > signals["coherence"][1]
    stats = quality_stats(scores, signals, 0.46)
    assert stats["below_threshold"] == 2 and sum(stats["histogram"]["counts"]) == 3
