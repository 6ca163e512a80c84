"""The shared vocabulary of every stage: messages, corpus records and training examples.

Stages exchange these records, never ad-hoc dicts. Each record round-trips through the JSON
line formats described in DESIGN.md (`corpus.jsonl`, `dataset/*.jsonl`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")
SOURCES = ("chatgpt", "claude", "pdf", "markdown", "text", "jsonl", "csv", "parquet", "hf_dataset")


@dataclass
class Message:
    """One turn of a conversation."""

    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass
class Record:
    """One normalised conversation or document: a line of `corpus.jsonl`."""

    id: str
    source: str
    kind: str  # "conversation" | "document"
    title: str = ""
    created_at: str | None = None
    messages: list[Message] | None = None
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("conversation", "document"):
            raise ValueError(f"record kind must be conversation or document, not {self.kind!r}")
        if self.kind == "conversation" and self.messages is None:
            raise ValueError("a conversation record needs messages")
        if self.kind == "document" and self.text is None:
            raise ValueError("a document record needs text")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "kind": self.kind,
            "title": self.title,
            "created_at": self.created_at,
        }
        if self.kind == "conversation":
            out["messages"] = [m.to_dict() for m in self.messages or []]
        else:
            out["text"] = self.text
        out["metadata"] = self.metadata
        out["origin"] = self.origin
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Record":
        messages = data.get("messages")
        return cls(
            id=data["id"],
            source=data["source"],
            kind=data["kind"],
            title=data.get("title") or "",
            created_at=data.get("created_at"),
            messages=[Message(m["role"], m["content"]) for m in messages] if messages is not None else None,
            text=data.get("text"),
            metadata=data.get("metadata") or {},
            origin=data.get("origin") or {},
        )

    def full_text(self) -> str:
        """All the text of the record, for search and statistics."""
        if self.kind == "document":
            return self.text or ""
        return "\n".join(m.content for m in self.messages or [])


@dataclass
class Example:
    """One training example: a line of `dataset/{train,validation,test}.jsonl`."""

    id: str
    messages: list[Message]
    source: str = ""
    themes: list[str] = field(default_factory=list)
    weight: float = 1.0
    quality: float = 1.0
    scores: dict[str, float] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, detailed: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "messages": [m.to_dict() for m in self.messages],
            "themes": self.themes,
            "weight": self.weight,
            "quality": self.quality,
            "source": self.source,
        }
        if detailed:
            out["scores"] = self.scores
            out["origin"] = self.origin
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Example":
        return cls(
            id=data["id"],
            messages=[Message(m["role"], m["content"]) for m in data["messages"]],
            source=data.get("source", ""),
            themes=list(data.get("themes") or []),
            weight=float(data.get("weight", 1.0)),
            quality=float(data.get("quality", 1.0)),
            scores=dict(data.get("scores") or {}),
            origin=dict(data.get("origin") or {}),
        )

    def prompt_text(self) -> str:
        """Everything before the final assistant turn."""
        return "\n".join(m.content for m in self.messages[:-1])

    def response_text(self) -> str:
        """The final assistant turn: what the model is trained to say."""
        return self.messages[-1].content if self.messages else ""


def stable_id(*parts: Any) -> str:
    """A short id derived from content, so re-ingesting the same input yields the same id."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def as_plain(obj: Any) -> Any:
    """A dataclass (or tree of them) as plain JSON-ready data."""
    return asdict(obj)
