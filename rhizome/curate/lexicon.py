"""Word lists and word functions shared by themes, questions and keyword search.

Themes must name topics, so stop words and conversational filler ("like", "time", "thing",
"really") are suppressed. Candidate phrases are content words and pairs of adjacent content
words; inflections are merged by their Porter stems ("run", "runs", "running") and shown in
their most frequent written form. The head of a phrase, its last word in English noun phrases
("gradient descent" -> "descent"), gives the theme hierarchy.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from functools import lru_cache

from nltk.stem.porter import PorterStemmer  # algorithmic: needs no NLTK data download

from ..text import STOP_WORDS

# Filler words that are frequent in chat but never a topic worth balancing a dataset on.
JUNK_THEMES = frozenset(
    """
    like time thing things way ways really just know think want good make use need lot lots yes
    sure thanks thank okay ok help question questions answer answers example examples kind sort
    actually maybe probably right let lets got get gets getting going go want wants look looking
    new old great nice best better bad little big different important able sorry hello hi hey
    day days today year years week way stuff people person something anything everything nothing
    use used using work works working does did doing done said say says tell mean means point
    case cases part parts place number numbers fact idea ideas bit start end problem issue
    able following etc yeah course fine cool please user assistant chatgpt claude ai model
    long short high low easy hard try tried keep kept feel felt improve improved small large
    true false real simple quick quickly slow slowly usually often common mistake mistakes note
    notes step steps tip tips way instead well also first second last next main key general
    specific certain possible likely whole full half free open close clear sense reason reasons
    matter matters keeping doing making taking trying giving using getting minute minutes hour
    hours month months second seconds morning evening night tonight tomorrow yesterday
    """.split()
)
# Letters only, at least three, apostrophes and hyphens inside: "state-of-the-art", "don't".
TOKEN_PATTERN = r"(?u)\b[^\W\d_](?:[^\W\d_]|['-](?=[^\W\d_])){2,}\b"
_TOKEN = re.compile(TOKEN_PATTERN)
_ANY_WORD = re.compile(r"\w+(?:['-]\w+)*", re.UNICODE)
_BREAK = re.compile(r"[.,;:!?()\[\]{}\"“”«»|/\n\t]+")
_STEMMER = PorterStemmer()


@lru_cache(maxsize=500_000)
def stem(word: str) -> str:
    return _STEMMER.stem(word)


JUNK_STEMS = frozenset(stem(w) for w in JUNK_THEMES)


@lru_cache(maxsize=500_000)
def is_content(word: str) -> bool:
    """A lower-case word that may be part of a theme."""
    return (len(word) > 2 and word not in STOP_WORDS and word not in JUNK_THEMES
            and _TOKEN.fullmatch(word) is not None and stem(word) not in JUNK_STEMS)


def phrase_key(phrase: str) -> str:
    """Inflection-free identity of a phrase: its words' stems."""
    return " ".join(stem(w) for w in phrase.split())


class PhraseAnalyzer:
    """A vectoriser analyzer: theme candidates of a text, keyed by stems.

    Unlike a plain n-gram vectoriser, a pair never spans punctuation, a stop word, a junk word
    or a number, so "mistakes? A common" or "state of the art" -> "state art" never appear.
    It remembers how each key was written so `display` can show the usual form.
    """

    def __init__(self) -> None:
        self.surfaces: dict[str, Counter] = defaultdict(Counter)

    def __call__(self, text: str) -> list[str]:
        keys: list[str] = []
        for segment in _BREAK.split(text.lower()):
            run: list[str] = []
            for word in [*_ANY_WORD.findall(segment), ""]:
                if word and is_content(word):
                    run.append(word)
                    continue
                for phrase in [*run, *map(" ".join, zip(run, run[1:]))]:
                    key = phrase_key(phrase)
                    self.surfaces[key][phrase] += 1
                    keys.append(key)
                run = []
        return keys

    def display(self, key: str) -> str:
        """The most frequent written form of a key (ties: alphabetical)."""
        forms = self.surfaces.get(key)
        if not forms:
            return key
        return min(forms.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def candidate_phrases(text: str) -> list[str]:
    """Theme candidates of one text in their written form (for inspection and tests)."""
    analyzer = PhraseAnalyzer()
    return [analyzer.display(k) for k in analyzer(text)]


def head_word(theme: str) -> str:
    """The head of a theme phrase: its last word."""
    return theme.rsplit(" ", 1)[-1]
