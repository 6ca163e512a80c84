"""Text utilities shared by curation and retrieval (below both, so neither depends on the other).

`STOP_WORDS`: English function words plus the contractions' stems that tokenisers leave behind
("don", "ve", "ll"). Themes and questions skip them as candidates; keyword search leaves them out
of a query. The English list is scikit-learn's public one (`sklearn.feature_extraction.text`).
"""
from __future__ import annotations

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | frozenset(
    "don doesn didn isn aren wasn weren won wouldn shouldn couldn ve ll re im ive youre it's i'm".split()
)
