"""Speak an answer while it is still being generated: complete sentences go to the synthesiser
as soon as the token stream closes them, so the first sentence plays before the answer is done.

    speaker = SentenceSpeaker(voice="heart", speed=1.0, ws=ws)
    for token in tokens:
        text += token
        speaker.update(text)          # queues every sentence completed so far
        for rate, samples in speaker.ready(): play(rate, samples)
    speaker.close()
    for rate, samples in speaker.rest(): play(rate, samples)

Synthesis runs in one background thread, so the generator is never held up by the voice.
"""
from __future__ import annotations

import queue
import re
import threading
import time
from typing import Iterator

import numpy as np

from ..workspace import UserError, Workspace
from .audio import MAX_PIECE_CHARS, MIN_PIECE_CHARS, split_sentences
from .speech import _default_voice, choose_tts

_CLOSED = re.compile(r"[.!?…][\"'”’)\]]*\s+")
"""Where a sentence is known to be complete: end punctuation followed by a space (a period with
no space after it may still be "3." of "3.5" or "e.g")."""
IDLE_S = 300.0
_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")
_MARKUP = re.compile(r"[*_#`>|]+")


def speakable(text: str) -> str:
    """The answer as it should be read aloud: no [1]-style citations, no Markdown symbols."""
    return _MARKUP.sub(" ", _CITATION.sub("", text))


class SentenceSpeaker:
    """Turns a growing answer into audio chunks, one per sentence, synthesised in the background."""

    def __init__(self, voice: str | None = None, speed: float = 1.0, ws: Workspace | None = None,
                 model=None, engine: str | None = None) -> None:
        if not 0.5 <= float(speed) <= 2.0:
            raise UserError(f"speed must be between 0.5 and 2.0, not {speed}")
        tts, self.note = choose_tts(ws, model, engine)
        self.engine, self.rate = tts.name, tts.rate
        voice = voice or _default_voice(tts.name, getattr(tts, "voices", []))
        self._speak = lambda sentence: tts.speak(sentence, voice, float(speed))
        self.sentences: list[str] = []
        self.spoken = 0
        self.seconds = 0.0
        self.first_sentence_at: float | None = None
        """time.perf_counter() when the first complete sentence was queued."""
        self.first_audio_at: float | None = None
        """time.perf_counter() when its audio was ready."""
        self._said = ""
        """The part of the answer already queued."""
        self._closed = False
        self._todo: queue.Queue = queue.Queue()
        self._audio: queue.Queue = queue.Queue()
        threading.Thread(target=self._work, daemon=True, name="rhizome-speak").start()

    def update(self, text: str) -> None:
        """`text` is the whole answer so far; every sentence it now completes is queued."""
        tail = self._tail(text)
        ends = [m.end() for m in _CLOSED.finditer(tail)]
        if ends:
            cut = ends[-1]
            if len(tail[:cut].strip()) < MIN_PIECE_CHARS:  # "Yes." waits to be joined to the next one
                return
        elif len(tail) > MAX_PIECE_CHARS:  # a long run without a full stop: cut at a space
            cut = tail.rfind(" ", 0, MAX_PIECE_CHARS) + 1 or MAX_PIECE_CHARS
        else:
            return
        self._queue(tail[:cut])
        self._said += tail[:cut]

    def _tail(self, text: str) -> str:
        """What `text` adds to what was queued; the final answer may come back stripped."""
        if text.startswith(self._said):
            return text[len(self._said):]
        said, text = self._said.lstrip(), text.lstrip()
        return text[len(said):] if text.startswith(said.rstrip()) else ""

    def close(self, text: str | None = None) -> None:
        """The answer is complete (`text`: its final form); the remainder is queued."""
        if self._closed:
            return
        if text is not None:
            self.update(text)
            self._queue(self._tail(text))
            self._said = text
        self._closed = True
        self._todo.put(None)

    def _queue(self, text: str) -> None:
        for sentence in split_sentences(speakable(text)):
            if any(ch.isalnum() for ch in sentence):
                if self.first_sentence_at is None:
                    self.first_sentence_at = time.perf_counter()
                self.sentences.append(sentence)
                self._todo.put(sentence)

    def _work(self) -> None:
        while (sentence := self._next()) is not None:
            try:
                samples = self._speak(sentence)
            except Exception as exc:  # handed to the reader, who raises it in its own thread
                self._audio.put(exc)
                continue
            self.spoken += 1
            if samples.size:
                if self.first_audio_at is None:
                    self.first_audio_at = time.perf_counter()
                self.seconds += samples.size / self.rate
                self._audio.put((self.rate, samples))
        self._audio.put(None)

    def _next(self) -> str | None:
        """The next sentence; None at the end, or after IDLE_S without one (a reader that went
        away, e.g. a closed browser tab, never calls close(): the thread must not live forever)."""
        try:
            return self._todo.get(timeout=IDLE_S)
        except queue.Empty:
            return None

    def ready(self) -> Iterator[tuple[int, np.ndarray]]:
        """The chunks synthesised so far, without waiting."""
        while True:
            try:
                item = self._audio.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._audio.put(None)  # keep the end mark for rest()
                return
            yield self._checked(item)

    def rest(self) -> Iterator[tuple[int, np.ndarray]]:
        """Every remaining chunk, waiting for each; call after `close`."""
        self.close()
        while (item := self._audio.get()) is not None:
            yield self._checked(item)
        self._audio.put(None)

    @staticmethod
    def _checked(item):
        if isinstance(item, Exception):
            raise item
        return item

    @property
    def done(self) -> bool:
        return self._closed and self.spoken == len(self.sentences)

    @property
    def first_audio_s(self) -> float | None:
        """Seconds from the first complete sentence to its audio."""
        if self.first_sentence_at is None or self.first_audio_at is None:
            return None
        return self.first_audio_at - self.first_sentence_at
