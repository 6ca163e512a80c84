"""Chat tab: streamed answers with cited sources, a model picker, base vs tuned, voice in and out,
and conversations that persist (the sessions panel is `chat_sessions`).

The core answers (`rhizome.chat.answer`, llama.cpp with one cached engine per model, so picking
another model hot-swaps it); speech is `rhizome.chat.speech`. This module only streams tokens
into the chat boxes, the spoken answer a sentence at a time into a streaming player, and formats
sources and engine notes.
"""
from __future__ import annotations

import shutil
from functools import partial
import time
import uuid
from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr

from .. import jobs
from ..chat.history import split_reasoning
from ..config import ChatConfig
from ..workspace import UserError
from . import chat_sessions
from .common import Context, esc, guard, notice, owned_output
from .users import CHAT_QUEUE

BASE = "base"


def build(ctx: Context) -> SimpleNamespace:
    d = ChatConfig()
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=260):
            sess = chat_sessions.build_sessions(ctx)
            gr.Markdown("### Model")
            model = gr.Dropdown([("base (bundled)", BASE)], value=BASE, label="Answer with",
                                info="tuned runs appear here after Export", elem_id="rz-chat-model")
            compare = gr.Checkbox(False, label="Also answer with the base model (side by side)")
            retrieval = gr.Checkbox(d.retrieval, label="Ground answers in my documents (retrieval)")
            with gr.Accordion("Sampling", open=False, elem_id="rz-chat-sampling"):
                top_k = gr.Slider(0, 12, value=d.top_k, step=1, label="Sources retrieved")
                temperature = gr.Slider(0.0, 1.5, value=d.temperature, step=0.05, label="Temperature")
                top_p = gr.Slider(0.05, 1.0, value=d.top_p, step=0.05, label="Top-p")
                max_tokens = gr.Slider(16, 1024, value=d.max_tokens, step=16, label="Max new tokens",
                                       elem_id="rz-chat-max-tokens")
            gr.Markdown("### Voice")
            mic = gr.Audio(sources=["microphone", "upload"], type="filepath", elem_id="rz-mic",
                           label="Ask by voice: record, stop, and it is sent")
            speak = gr.Checkbox(False, label="Speak the answers",
                                info="talk mode: each sentence is spoken as soon as it is written")
            with gr.Accordion("Voice and speed", open=False):
                voice = gr.Dropdown([], label="Voice", allow_custom_value=True)
                speed = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Speed")
            engines = gr.HTML(elem_classes=["rz-engine"], elem_id="rz-engines")
        with gr.Column(scale=6, min_width=420):
            heads = gr.HTML('<div class="rz-heads"><b>Chosen model</b><b>Base model (bundled)</b></div>',
                            visible=False)
            with gr.Row():
                tuned_box = gr.Chatbot(label="Answer", show_label=False, height=470, elem_id="rz-chat-main",
                                       placeholder="Ask about anything in your material.")
                base_box = gr.Chatbot(label="Base model", show_label=False, height=470, visible=False,
                                      elem_id="rz-chat-base", placeholder="The base model answers here.")
            with gr.Row():
                question = gr.Textbox(placeholder="Ask a question…", show_label=False, scale=8, lines=1,
                                      elem_id="rz-chat-input")
                send = gr.Button("Send", variant="primary", scale=1, min_width=90, elem_id="rz-chat-send")
                clear = gr.Button("Clear", scale=1, min_width=70)
            status = gr.HTML(elem_id="rz-chat-status")
        with gr.Column(scale=3, min_width=260):
            gr.Markdown("### Sources")
            sources = gr.HTML(notice("Sources used for the last answer appear here.", "info"), elem_id="rz-sources")
            spoken = gr.Audio(label="Spoken answer", autoplay=True, interactive=False, visible=False,
                              streaming=can_stream_speech(), elem_id="rz-spoken")
    settings = [model, compare, retrieval, top_k, temperature, top_p, max_tokens, speak, voice, speed]
    outputs = [question, tuned_box, base_box, sources, status, spoken, engines]
    ask = guard(partial(respond, ctx, stream_audio=spoken.streaming))
    # conversations: the question goes to the open session (a new one on the first question)
    ensure = guard(partial(chat_sessions.ensure_session, ctx))
    ensure_in = [sess.current, question, sess.persona, sess.private, sess.train]

    def ask_in_session(ensured) -> None:
        ensured.success(ask, [question, tuned_box, base_box, *settings, sess.current], outputs,
                        **CHAT_QUEUE).then(guard(partial(chat_sessions.refresh_list, ctx)),
                                                  [sess.current], [sess.pick])

    for trigger in (send.click, question.submit):
        ask_in_session(trigger(ensure, ensure_in, [sess.current, sess.pick]))
    heard = mic.stop_recording(guard(lambda path: hear(ctx, path)), [mic], [question, engines])
    uploaded = mic.upload(guard(lambda path: hear(ctx, path)), [mic], [question, engines])
    for dep in (heard, uploaded):
        ask_in_session(dep.success(ensure, ensure_in, [sess.current, sess.pick]))
    chat_sessions.wire(ctx, sess, tuned_box, [base_box, status])
    compare.change(lambda on: (gr.Chatbot(visible=on), gr.HTML(visible=on)), [compare], [base_box, heads])
    speak.change(lambda on: gr.Audio(visible=on), [speak], [spoken])
    model.input(guard(lambda m: notice(f"Next answer uses <b>{esc(m)}</b> (loaded on first use, "
                                       "the previous engine is freed).", "info")), [model], [status])
    clear.click(lambda: ([], [], notice("Sources used for the last answer appear here.", "info"), "", None),
                None, [tuned_box, base_box, sources, status, spoken]).then(
        lambda: chat_sessions.open_session(ctx, None), None,
        [sess.current, sess.pick, tuned_box, sess.persona, sess.private, sess.train, sess.note])
    restore = (guard(partial(chat_sessions.restore, ctx)), [sess.current],
               [sess.current, sess.pick, tuned_box, sess.persona, sess.private, sess.train, sess.note])
    return SimpleNamespace(model=model, engines=engines, voice=voice, engines_fn=lambda: engines_html(ctx),
                           sessions=sess, restore=restore,
                           voices_fn=lambda: voice_choices(ctx),
                           choices_fn=lambda: model_choices(ctx))


def model_choices(ctx: Context) -> list[tuple[str, str]]:
    """(label, name) for every chat model: the bundled base, each run's exports, models/*.gguf."""
    from ..chat import list_models

    kinds = {"base": "bundled", "export": "tuned", "lora": "tuned LoRA", "file": "file"}
    return [(f"{m['name']} ({kinds.get(m.get('kind'), m.get('kind', ''))}, {m.get('size_mb', 0):.0f} MB)", m["name"])
            for m in list_models(ctx.ws)]


def respond(ctx: Context, question: str, tuned: list, base: list, model: str, compare: bool, retrieval: bool,
            top_k: float, temperature: float, top_p: float, max_tokens: float, speak: bool, voice: str | None,
            speed: float, session: str | None = None, stream_audio: bool = False) -> Iterator[tuple]:
    """Stream the answer (and the base model's, side by side) into the chat boxes, then speak it.

    `session`: the conversation it continues and is saved in (None: stateless).
    `stream_audio`: the spoken-answer player streams, so the answer goes out a sentence at a time.
    """
    question = (question or "").strip()
    if not question:
        raise UserError("type a question (or record one with the microphone)")
    config = ChatConfig(model=model or BASE, retrieval=bool(retrieval), top_k=int(top_k),
                        temperature=float(temperature), top_p=float(top_p), max_tokens=int(max_tokens))
    side_by_side = bool(compare) and config.model != BASE
    boxes = {"tuned": list(tuned or []), "base": list(base or [])}
    for side in ("tuned", "base") if side_by_side else ("tuned",):
        boxes[side] += [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
    skip = gr.skip()
    status = notice(f"Answering with <b>{esc(config.model)}</b>" + (" and <b>base</b>" if side_by_side else "") + "…")
    yield "", boxes["tuned"], boxes["base"] if side_by_side else skip, skip, status, skip, skip
    results: dict[str, Any] = {}
    speaker = start_speaker(ctx, voice, speed) if speak and stream_audio else None  # talk mode
    for side, raw, result in stream_answers(ctx, question, config, side_by_side, session=session or None):
        text = chat_sessions.reply_html(result.answer, result.reasoning) if result is not None else \
            chat_sessions.streamed_reply(raw)
        boxes[side][-1] = {"role": "assistant", "content": text}
        if result is not None:
            results[side] = result
        yield skip, boxes["tuned"], boxes["base"] if side_by_side else skip, skip, skip, skip, skip
        if speaker is not None and side == "tuned":  # each finished sentence is spoken at once
            speaker.update(result.answer if result is not None else split_reasoning(raw)[0])
            for chunk in speaker.ready():
                yield (skip,) * 5 + (chunk, engines_html(ctx, spoke=speaker))
    main = results["tuned"]
    if compare and not side_by_side:
        status_html = notice("Pick a tuned model above to compare it with the base model.", "info") + timing_html(main)
    else:
        status_html = timing_html(main) + (timing_html(results["base"]) if side_by_side else "")
    if session and not main.saved:
        status_html += notice("This conversation was deleted while answering: the answer was not saved.", "warn")
    yield skip, skip, skip, sources_html(main.sources), status_html, skip, skip
    if speaker is not None:
        speaker.close(main.answer)
        for chunk in speaker.rest():
            yield (skip,) * 5 + (chunk, engines_html(ctx, spoke=speaker))
        yield (skip,) * 5 + (skip, engines_html(ctx, spoke=speaker))
    elif speak and main.answer.strip():
        for audio, engines in speak_answer(ctx, main.answer, voice, speed, stream_audio):
            yield (skip,) * 5 + (audio, engines)


def stream_answers(ctx: Context, question: str, config: ChatConfig, side_by_side: bool, session: str | None = None
                   ) -> Iterator[tuple[str, str, Any]]:
    """(side, text so far, Answer when that side is done) while the core generates in a background job.

    One core call: `answer` for one model, or `compare` (base and tuned over the same sources).
    """
    from ..chat import answer, compare

    ws = ctx.ws

    def work(job: jobs.Job) -> dict[str, Any]:
        if side_by_side:
            return compare(ws, question, config.model, config, on_token=lambda side, tok: job.record((side, tok)),
                           session=session)
        return {"tuned": answer(ws, question, config, on_token=lambda tok: job.record(("tuned", tok)), session=session)}

    job = jobs.run_in_background(work, kind="chat")
    texts: dict[str, str] = {"tuned": "", "base": ""}
    shown = 0.0
    for side, token in job.updates():
        texts[side] += token
        if time.time() - shown > 0.05:  # ~20 updates a second is smooth and cheap
            shown = time.time()
            yield side, texts[side], None
    job.raise_if_failed()
    for side, result in job.result.items():
        yield side, result.answer, result


def sources_html(sources: list[dict[str, Any]]) -> str:
    if not sources:
        return notice("No sources were used (retrieval off, or nothing relevant in the memory).", "info")
    items = []
    for i, s in enumerate(sources, 1):
        i = s.get("n", i)  # the number the answer cites, e.g. [2]
        cite = s.get("citation") or s.get("title") or s.get("source") or "source"
        score = s.get("score")
        items.append(f'<div class="rz-source"><div class="rz-source-head"><span>[{i}] {esc(cite)}</span>'
                     f'<span class="rz-source-score">{"" if score is None else f"{score:.3f}"}</span></div>'
                     f'<div class="rz-source-text">{esc((s.get("snippet") or s.get("text") or "")[:600])}</div></div>')
    return f'<div class="rz-sources">{"".join(items)}</div>'


def timing_html(result: Any) -> str:
    t = getattr(result, "timings", None) or {}
    bits = [f"model <b>{esc(result.model)}</b>"]
    for key, label in (("tokens_per_s", "tokens/s"), ("retrieval_ms", "ms retrieval"), ("total_s", "s total")):
        if isinstance(t.get(key), (int, float)):
            bits.append(f"{t[key]:.1f} {label}")
    return f'<p class="rz-muted rz-timing">{" · ".join(bits)}</p>'


def voice_choices(ctx: Context) -> gr.Dropdown:
    from ..chat.speech import engines_status

    tts = engines_status(ws=ctx.ws).get("tts", {})
    return gr.Dropdown(choices=tts.get("voices") or [], value=tts.get("default_voice"))


def hear(ctx: Context, path: str | None) -> tuple[str, str]:
    """Transcribe a recorded or uploaded question."""
    from ..chat.speech import transcribe

    if not path:
        raise UserError("no audio was recorded")
    if not ctx.ws.contains(path):
        raise UserError("the recording did not land in the workspace; please record it again")
    heard = transcribe(path, ws=ctx.ws)
    if not heard.text.strip():
        raise UserError(f"nothing was understood in the recording ({heard.engine}); please try again, closer to the mic")
    return heard.text, engines_html(ctx, heard=heard)


def can_stream_speech() -> bool:
    """Whether the spoken answer can stream: gradio encodes streamed audio (even WAV) with ffmpeg."""
    return shutil.which("ffmpeg") is not None


def speak_answer(ctx: Context, text: str, voice: str | None, speed: float, stream: bool) -> Iterator[tuple[Any, Any]]:
    """(audio, engine line) updates: one (rate, samples) chunk per sentence as it is synthesised,
    so the first sentence plays while the rest are made; without streaming, one WAV at the end."""
    from ..chat.speech import stream_speech

    if not stream:
        yield speak_answer_wav(ctx, text, voice, speed)
        return
    speech = stream_speech(text, voice=voice or None, speed=float(speed), ws=ctx.ws)
    for chunk in speech:
        yield chunk, engines_html(ctx, spoke=speech)  # "sentence k of n" while it goes
    yield gr.skip(), engines_html(ctx, spoke=speech)  # the final length, even if the last sentence was silent


def start_speaker(ctx: Context, voice: str | None, speed: float):
    """A SentenceSpeaker that voices the answer a sentence at a time while it is generated."""
    from ..chat.talk import SentenceSpeaker

    return SentenceSpeaker(voice=voice or None, speed=float(speed), ws=ctx.ws)


def speak_answer_wav(ctx: Context, text: str, voice: str | None, speed: float) -> tuple[str, str]:
    """The answer as one WAV in the workspace's upload folder, and a line naming the engine."""
    from ..chat.speech import synthesize

    out = ctx.ws.root / ".uploads" / "speech" / f"answer-{uuid.uuid4().hex[:8]}.wav"
    out.parent.mkdir(parents=True, exist_ok=True)
    spoken = synthesize(text, out, voice=voice or None, speed=float(speed), ws=ctx.ws)
    return owned_output(ctx, spoken.path), engines_html(ctx, spoke=spoken)


def spoken_line(spoke: Any) -> str:
    """Which engine spoke the last answer and how long it is, or how far a streamed one has got."""
    if getattr(spoke, "done", True):
        return f"Last answer spoken by {spoke.engine} ({spoke.seconds:.1f}s)."
    return f"Speaking the answer with {spoke.engine}: sentence {spoke.spoken} of {len(spoke.sentences)}…"


def engines_html(ctx: Context, heard: Any = None, spoke: Any = None) -> str:
    """Which speech engines are active and why (e.g. a missing Kokoro model and the fallback)."""
    try:
        from ..chat.speech import engines_status

        status = engines_status(ws=ctx.ws)
    except Exception as exc:  # speech is optional: say why instead of breaking the tab
        return notice(f"Voice is unavailable: {esc(exc)}", "warn")
    rows = []
    for kind, info in status.items():
        if not isinstance(info, dict):
            continue
        name = info.get("engine") or info.get("active") or "none"
        why = info.get("note") or info.get("reason") or ""
        label = {"stt": "Speech → text", "tts": "Text → speech"}.get(kind, kind)
        rows.append(f"<div class='rz-engine-row'><b>{esc(label)}</b> <code>{esc(name)}</code>"
                    f"<div class='rz-muted'>{esc(why)}</div></div>")
    if heard is not None:
        rows.append(f"<div class='rz-muted'>Last question heard by {esc(heard.engine)}.</div>")
    if spoke is not None:
        rows.append(f"<div class='rz-muted'>{esc(spoken_line(spoke))}</div>")
    if not can_stream_speech():
        rows.append("<div class='rz-muted'>ffmpeg not found on PATH: spoken answers play once fully "
                    "synthesised (install ffmpeg to hear them sentence by sentence).</div>")
    return "".join(rows) or notice("Speech engines unavailable.", "warn")
