"""Grounded examples: part of the training set shown with retrieved sources, as the chat shows them.

A model tuned only on the person's bare replies learns to answer from memory and stops using
(and citing) the sources the chat puts in front of it: on the sample, the default run cited the
right source for 36% of the eval's document questions against the base model's 62%. So a seeded
share of the training examples (`TrainConfig.grounded_fraction`) is rewritten the way the chat
prompts: the chat's system prompt, the top sources from the workspace memory for the example's
last question (cut to the sentences nearest it, numbered), the chat's prompt layout, and the
person's reply as the target, opened by the number of the source it agrees with most, `[n]`
(98% cited after grounding half the examples, bench/RESULTS.md). When no source shares enough of
the reply's words, the reply stays uncited, so the model also sees sources it should not cite.
Query vectors come from the build's embedding cache (the questions were embedded when the memory
was built), so grounding costs little beyond search.
"""
from __future__ import annotations

import random
from typing import Any

from ..chat import extract, rag
from ..config import ChatConfig
from ..workspace import Workspace

MIN_SUPPORT = 0.3
"""Share of the reply's content words a source must hold to be cited for it."""


def support(reply: str, source: str) -> float:
    """How much of the reply's content (stemmed content words) the source holds, 0..1."""
    wanted = set(extract.content_terms(reply))
    return len(wanted & set(extract.content_terms(source))) / len(wanted) if wanted else 0.0


def cited_reply(reply: str, hits: list[dict[str, Any]]) -> str:
    """The reply opened by `[n]` for the source that supports it best, when one supports it enough.

    At the start, not the end: a long reply is often cut by the chat's answer budget, and a
    mark in the middle of the person's own wording was learnt too weakly to show up (measured:
    14% cited with the mark after the first sentence, 24% at the end)."""
    scores = [support(reply, str(hit.get("text", ""))) for hit in hits]
    if not scores or max(scores) < MIN_SUPPORT:
        return reply
    return f"[{scores.index(max(scores)) + 1}] {reply.lstrip()}"


def ground(messages: list[dict[str, str]], hits: list[dict[str, Any]], chat: ChatConfig) -> list[dict[str, str]]:
    """One example's messages as the chat would prompt them, its last reply cited."""
    *context, question, reply = messages
    blocks = [rag.source_block(n, hit) for n, hit in enumerate(hits, 1)]
    earlier = [m for m in context if m.get("role") != "system"]
    system = [{"role": "system", "content": chat.system_prompt}] if chat.system_prompt else []
    return [*system, *earlier,
            {"role": "user", "content": rag.user_message(question["content"], blocks, chat.prompt_layout)},
            {"role": "assistant", "content": cited_reply(reply["content"], hits)}]


def _groundable(example: dict[str, Any]) -> bool:
    messages = example.get("messages") or []
    return (len(messages) >= 2 and messages[-1].get("role") == "assistant"
            and messages[-2].get("role") == "user" and bool(str(messages[-2].get("content", "")).strip()))


def ground_examples(ws: Workspace, examples: list[dict[str, Any]], fraction: float,
                    seed: int) -> tuple[list[dict[str, Any]], int]:
    """The examples with a seeded `fraction` of them grounded, and how many were. Without a
    memory index (or with fraction 0) they come back unchanged."""
    import torch

    from ..memory import open_memory
    from ..memory.embed import EmbeddingCache

    candidates = [i for i, e in enumerate(examples) if _groundable(e)]
    count = round(fraction * len(candidates))
    memory = open_memory(ws) if count else None
    if memory is None or len(memory) == 0:
        return examples, 0
    chosen = sorted(random.Random(seed).sample(candidates, count))
    chat = ChatConfig()
    questions = [str(examples[i]["messages"][-2]["content"]) for i in chosen]
    threads = torch.get_num_threads()
    vectors = EmbeddingCache(ws, memory.meta.get("embedder")).embed(questions)
    torch.set_num_threads(threads)  # embedding what the cache lacks re-fits the pool; training keeps its own
    out = list(examples)
    for i, question, vector in zip(chosen, questions, vectors):
        hits = extract.focus_sources(_sources(memory, vector, question, chat.top_k), question, chat.source_chars)
        out[i] = {**examples[i], "messages": ground(examples[i]["messages"], hits, chat), "grounded": True}
    return out, count


def _sources(memory: Any, vector: Any, question: str, k: int) -> list[dict[str, Any]]:
    """The top k hits for the question, leaving out the question's own message: memory holds every
    message, but a question asked in the chat is not in memory yet, so it is no source."""
    same = " ".join(question.lower().split())
    hits = memory.search_vector(vector, k + 2, question)
    return [h for h in hits if " ".join(str(h.get("text", "")).lower().split()) != same][:k]
