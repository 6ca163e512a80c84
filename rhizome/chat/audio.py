"""Audio formats for the speech engines: read any common file or array, convert, write WAV.

Speech recognisers want one thing: 16 kHz mono 16-bit PCM. Users hand us anything else —
8 kHz phone recordings, 44.1 kHz stereo music-rate files, float WAVs from editors, 8-bit WAVs,
or the `(rate, array)` pair that a Gradio microphone produces. `to_pcm16k` normalises all of
them; `read_audio` turns unreadable files into one clear `UserError`. `split_sentences` cuts an
answer into pieces small enough to synthesise one by one, so playback can start early.
"""
from __future__ import annotations

import re
from math import gcd
from pathlib import Path

import numpy as np

from ..workspace import UserError, atomic_path

TARGET_RATE = 16000
MAX_PIECE_CHARS = 300
"""Longest text piece handed to a synthesiser at once (Kokoro's limit is 510 phonemes)."""

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
MIN_PIECE_CHARS = 24
"""Shorter sentences (\"Yes.\", \"Dr.\") are joined to the next one for natural prosody."""
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples (frames x channels, float32 in [-1, 1]) and the rate of an audio file."""
    import soundfile as sf

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: audio file not found")
    if p.stat().st_size == 0:
        raise UserError(f"{p}: the file is empty (0 bytes); record or upload the audio again")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise UserError(f"{p}: not a readable audio file (use WAV, FLAC or OGG): {exc}") from None
    return data, int(rate)


def to_float(samples: np.ndarray) -> np.ndarray:
    """Integer or float samples as float32 in [-1, 1] (8-bit WAV is unsigned, centred on 128)."""
    a = np.asarray(samples)
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / float(-np.iinfo(a.dtype).min)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    raise UserError(f"audio samples of type {a.dtype} are not supported; use integer or float PCM")


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels; accepts frames x channels and (as some tools give) channels x frames."""
    a = np.asarray(samples)
    if a.ndim == 1:
        return a
    if a.ndim != 2:
        raise UserError(f"audio must be 1-D or 2-D (frames x channels), not shape {a.shape}")
    if a.shape[1] > 8 and a.shape[0] <= 8:  # channels x frames: no real file has > 8 channels
        a = a.T
    return a.mean(axis=1)


def resample(samples: np.ndarray, rate: int, target: int = TARGET_RATE) -> np.ndarray:
    """Polyphase resampling (anti-aliased) from `rate` to `target`."""
    from scipy.signal import resample_poly

    if rate <= 0:
        raise UserError(f"sample rate must be positive, not {rate}")
    if rate == target or samples.size == 0:
        return samples.astype(np.float32)
    g = gcd(int(rate), int(target))
    return resample_poly(samples, target // g, int(rate) // g).astype(np.float32)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit PCM (clipped, so a hot recording cannot wrap around)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def to_pcm16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Any array of samples at any rate -> 16 kHz mono int16, what the recognisers expect."""
    mono = to_mono(to_float(samples))
    return to_int16(resample(mono, rate, TARGET_RATE))


def load_pcm16k(audio, rate: int | None = None) -> np.ndarray:
    """A path, an array with its `rate`, or Gradio's `(rate, array)` pair -> 16 kHz mono int16."""
    if isinstance(audio, tuple) and len(audio) == 2 and np.isscalar(audio[0]):
        rate, audio = int(audio[0]), audio[1]
    if isinstance(audio, (str, Path)):
        data, rate = read_audio(audio)
        return to_pcm16k(data, rate)
    if isinstance(audio, np.ndarray):
        if rate is None:
            raise UserError("an audio array needs its sample rate (pass rate=...)")
        return to_pcm16k(audio, rate)
    raise UserError(f"cannot read audio from a {type(audio).__name__}; give a file path or (rate, array)")


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> Path:
    """Write mono 16-bit WAV atomically (a crash never leaves half a file)."""
    import soundfile as sf

    target = Path(path)
    pcm = samples if samples.dtype == np.int16 else to_int16(to_float(samples))
    with atomic_path(target) as tmp:
        sf.write(str(tmp), pcm, int(rate), format="WAV", subtype="PCM_16")
    return target


def split_sentences(text: str, limit: int = MAX_PIECE_CHARS) -> list[str]:
    """Sentences of `text`, long ones cut at commas and then at spaces to stay under `limit`."""
    pieces: list[str] = []
    pending = ""
    for sentence in _SENTENCE_END.split(text.strip()):
        sentence = " ".join(f"{pending} {sentence}".split())
        pending = sentence if len(sentence) < MIN_PIECE_CHARS else ""
        if sentence and not pending:
            pieces.extend(_cut(sentence, limit))
    return pieces + ([pending] if pending else [])


def _cut(sentence: str, limit: int) -> list[str]:
    if len(sentence) <= limit:
        return [sentence]
    parts = _CLAUSE_END.split(sentence)
    if len(parts) == 1:  # no clause breaks: words, and for one giant "word", fixed slices
        parts = sentence.split(" ")
        if len(parts) == 1:
            return [sentence[i:i + limit] for i in range(0, len(sentence), limit)]
    out, current = [], ""
    for part in parts:
        for piece in _cut(part, limit):  # a clause that is itself too long is cut at words
            if current and len(current) + 1 + len(piece) > limit:
                out.append(current)
                current = piece
            else:
                current = f"{current} {piece}".strip()
    return out + ([current] if current else [])
