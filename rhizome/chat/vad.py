"""Voice-activity detection by frame energy: where the speech is, and where to cut long audio.

A recogniser like Moonshine handles pieces of up to ~30 s well and invents words past that, so a
2-minute voice note is cut at its pauses into pieces of at most `MAX_PIECE_S`. Speech is told
from silence by short-time energy against the recording's own noise floor (the quietest tenth
of its frames), which needs no model and copes with any recording level. Leading, trailing and
long inner silences are dropped, so an all-silent recording gives no pieces at all.
"""
from __future__ import annotations

import numpy as np

RATE = 16000
FRAME = 480  # 30 ms
MAX_PIECE_S = 20.0
"""Longest piece handed to the recogniser (well under Moonshine's ~30 s)."""
MIN_PAUSE_S = 0.3
"""A quieter stretch at least this long is a pause: a place to cut, or to drop when long."""
PAD_S = 0.2
"""Silence kept on each side of a piece so the first and last sounds are not clipped."""
FLOOR_DB = -55.0
"""Frames quieter than this (dBFS) are silent whatever the noise floor (digital silence)."""
ABOVE_NOISE_DB = 12.0
BELOW_PEAK_DB = 45.0


def frame_db(pcm: np.ndarray) -> np.ndarray:
    """Energy of each 30 ms frame of 16 kHz int16 audio, in dB relative to full scale."""
    n = len(pcm) // FRAME
    if n == 0:
        return np.zeros(0)
    frames = pcm[:n * FRAME].astype(np.float32).reshape(n, FRAME) / 32768.0
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)


def speech_frames(pcm: np.ndarray) -> np.ndarray:
    """True for each 30 ms frame that holds speech; short gaps inside words are filled."""
    db = frame_db(pcm)
    if db.size == 0:
        return np.zeros(0, bool)
    noise, peak = np.percentile(db, 10), db.max()
    threshold = max(FLOOR_DB, min(noise + ABOVE_NOISE_DB, peak - 6.0), peak - BELOW_PEAK_DB)
    voiced = db > threshold
    return _fill_gaps(voiced, int(MIN_PAUSE_S * RATE / FRAME))


def _fill_gaps(voiced: np.ndarray, shortest: int) -> np.ndarray:
    """Quiet runs shorter than `shortest` frames between voiced frames count as speech (stops, breaths)."""
    out = voiced.copy()
    idx = np.flatnonzero(voiced)
    for a, b in zip(idx[:-1], idx[1:]):
        if 1 < b - a <= shortest:
            out[a:b] = True
    return out


def regions(pcm: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) sample ranges of speech, separated by pauses of at least MIN_PAUSE_S."""
    voiced = speech_frames(pcm)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    return [(int(a) * FRAME, int(b) * FRAME) for a, b in zip(edges[::2], edges[1::2])]


def pieces(pcm: np.ndarray, max_s: float = MAX_PIECE_S) -> list[np.ndarray]:
    """The speech of `pcm` in pieces of at most `max_s`, cut in the middle of pauses.

    Neighbouring regions are joined while they fit (the recogniser does better with context); a
    single region longer than `max_s` (no pause at all) is cut at its quietest frame.
    """
    limit, pad = int(max_s * RATE), int(PAD_S * RATE)
    spans: list[list[int]] = []
    for start, end in _split_long(pcm, regions(pcm), limit - 2 * pad):
        if spans and end - spans[-1][0] <= limit - 2 * pad:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [pcm[max(0, a - pad):min(len(pcm), b + pad)] for a, b in spans]


def _split_long(pcm: np.ndarray, spans: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    out = []
    for start, end in spans:
        while end - start > limit:
            window = frame_db(pcm[start + limit // 2:start + limit])  # cut in the later half
            cut = start + limit // 2 + int(np.argmin(window)) * FRAME + FRAME // 2
            out.append((start, cut))
            start = cut
        out.append((start, end))
    return out
