"""Questions for document chunks, so a chunk of notes becomes a question -> answer example.

* `template` (fast, default): a question built from the chunk's own keyphrases, picked by
  TF-IDF against the other chunks ("How does gradient descent relate to learning rate?").
* `llm`: the local chat model (the bundled GGUF, or `question_model`) writes the question through
  llama-cpp-python, greedy decoding. Answers are cached in `WS/cache/questions.jsonl` keyed by a
  hash of the chunk, the model file and the prompt, so a rebuild asks nothing twice.
A model answer that is not a usable question falls back to the template (counted as `fallback`).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from ..config import BuildConfig
from ..events import ProgressFn, emit
from ..workspace import Workspace, append_jsonl, read_jsonl
from .lexicon import PhraseAnalyzer

PROMPT_VERSION = "q1"
SYSTEM = "You write one short question that the given passage answers. Reply with the question only."
TEMPLATES_ONE = [
    "What do my notes say about {a}?",
    "Can you explain {a}?",
    "What are the key points about {a} in \"{title}\"?",
]
TEMPLATES_TWO = [
    "How does {a} relate to {b}?",
    "What do my notes say about {a} and {b}?",
    "Summarise what \"{title}\" says about {a} and {b}.",
]


def keyphrases(texts: list[str], n: int = 2) -> list[list[str]]:
    """The `n` most distinctive non-junk phrases of each text (TF-IDF across the texts)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    analyzer = PhraseAnalyzer()
    vectorizer = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, max_df=0.9 if len(texts) > 10 else 1.0)
    try:
        matrix = vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # no usable words anywhere
        return [[] for _ in texts]
    vocab = [analyzer.display(k) for k in vectorizer.get_feature_names_out()]
    out = []
    for row in range(matrix.shape[0]):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        order = matrix.indices[lo:hi][(-matrix.data[lo:hi]).argsort(kind="stable")]
        phrases: list[str] = []
        for j in order:
            theme = vocab[j]
            if not any(set(theme.split()) & set(p.split()) for p in phrases):
                phrases.append(theme)
            if len(phrases) == n:
                break
        out.append(phrases)
    return out


def template_question(title: str, phrases: list[str], salt: str) -> str:
    """A question from keyphrases; the template is chosen by a hash so it is deterministic."""
    pick = int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16)
    title = title or "my notes"
    if len(phrases) >= 2:
        return TEMPLATES_TWO[pick % len(TEMPLATES_TWO)].format(a=phrases[0], b=phrases[1], title=title)
    if phrases:
        return TEMPLATES_ONE[pick % len(TEMPLATES_ONE)].format(a=phrases[0], title=title)
    return f"What does \"{title}\" say here?"


def template_questions(texts: list[str], titles: list[str]) -> list[str]:
    return [template_question(t, p, x) for x, t, p in zip(texts, titles, keyphrases(texts))]


def extract_question(reply: str) -> str | None:
    """The question in a model reply, or None when there is none worth keeping."""
    for line in reply.strip().splitlines():
        line = re.sub(r"^\s*(?:question\s*\d*\s*[:.-]|\d+[.)]|[-*])\s*", "", line, flags=re.I).strip(" \"'`*")
        if line.endswith("?") and 3 <= len(line.split()) <= 40:
            return line
    return None


class QuestionCache:
    """LLM questions already asked, keyed by chunk + model + prompt hash (append-only JSONL)."""

    def __init__(self, ws: Workspace) -> None:
        self.path = ws.root / "cache" / "questions.jsonl"
        self.answers: dict[str, str] = {}
        if self.path.is_file():
            for row in read_jsonl(self.path):
                self.answers[row["key"]] = row["question"]

    @staticmethod
    def key(model: Path, text: str) -> str:
        blob = f"{PROMPT_VERSION}\0{model.name}\0{model.stat().st_size}\0{text}"
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def put(self, key: str, question: str) -> None:
        self.answers[key] = question
        append_jsonl(self.path, {"key": key, "question": question})


def ask_model(llm: Any, text: str) -> str:
    passage = text if len(text) <= 1500 else text[:1500].rsplit(" ", 1)[0] + " ..."
    reply = llm.create_chat_completion(
        messages=[{"role": "system", "content": SYSTEM},
                  {"role": "user", "content": f"Passage:\n{passage}\n\nWrite one question that this passage answers."}],
        max_tokens=48, temperature=0.0,
    )
    return reply["choices"][0]["message"]["content"] or ""


def llm_questions(ws: Workspace, texts: list[str], titles: list[str], cfg: BuildConfig,
                  progress: ProgressFn | None = None) -> tuple[list[str], dict[str, int]]:
    """Questions written by the local model; cached answers are reused, the model loads lazily."""
    from ..models import resolve_gguf

    model_path = resolve_gguf(cfg.question_model)
    cache = QuestionCache(ws)
    stats = {"generated": 0, "cached": 0, "fallback": 0}
    fallbacks = template_questions(texts, titles)
    llm, out = None, []
    for i, text in enumerate(texts):
        key = QuestionCache.key(model_path, text)
        if key in cache.answers:
            stats["cached"] += 1
        else:
            llm = llm or _load_llm(model_path, cfg.seed)
            cache.put(key, extract_question(ask_model(llm, text)) or "")
            stats["generated"] += 1
            emit(progress, "questions", i + 1, len(texts))
        question = cache.answers[key]
        stats["fallback"] += not question
        out.append(question or fallbacks[i])
    return out, stats


def _load_llm(path: Path, seed: int) -> Any:
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=1024, seed=seed, verbose=False)


def ask_questions(ws: Workspace, texts: list[str], titles: list[str], cfg: BuildConfig,
                  progress: ProgressFn | None = None) -> tuple[list[str], dict[str, Any]]:
    """One question per chunk text, in the configured mode; returns (questions, stats)."""
    if cfg.question_mode == "llm" and texts:
        questions, stats = llm_questions(ws, texts, titles, cfg, progress)
        return questions, {"mode": "llm", **stats}
    return template_questions(texts, titles), {"mode": "template", "generated": len(texts)}
