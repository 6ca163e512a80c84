"""The chat engine: llama.cpp (through llama-cpp-python) over any GGUF, streaming tokens.

A file is checked before llama.cpp sees it (GGUF magic, a complete header, all tensor data
present), so a wrong, truncated or adapter-only file gets a clear message instead of a crash.
The chat template is the one stored in the GGUF (ChatML when it has none). Engines are costly
to load and large, so `ENGINES` keeps at most one or two (least recently used goes first) and
closes an evicted engine at once, which frees its weights and KV cache immediately.
"""
from __future__ import annotations

import atexit
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..workspace import UserError

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class _Reader:
    """Just enough of the GGUF layout to read metadata and tensor extents from a byte buffer."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        size = self.take("<Q")
        if self.pos + size > len(self.data):
            raise struct.error("string runs past the end of the header")
        text = self.data[self.pos:self.pos + size].decode("utf-8", "replace")
        self.pos += size
        return text

    def value(self, vtype: int) -> Any:
        if vtype == 8:
            return self.string()
        if vtype == 9:  # arrays are skipped: the engine needs none of them from here
            sub, count = self.take("<I"), self.take("<Q")
            if sub in _SCALARS:
                self.pos += count * struct.calcsize(_SCALARS[sub])
            elif sub == 8:  # vocabularies: 50k-250k strings, skipped in a tight loop
                data, pos, unpack = self.data, self.pos, struct.Struct("<Q").unpack_from
                for _ in range(count):
                    pos += 8 + unpack(data, pos)[0]
                self.pos = pos
            else:
                for _ in range(count):
                    self.value(sub)
            return None
        return self.take(_SCALARS[vtype])


def read_gguf_header(path: Path, limit: int = 64 * 2**20) -> dict[str, Any]:
    """Scalar metadata and the byte size the tensor data needs; raises UserError on a bad file."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as fh:
        data = fh.read(limit)
    if data[:4] != b"GGUF":
        raise UserError(f"{path} is not a GGUF model (no GGUF header): choose a .gguf file made for llama.cpp")
    try:
        reader = _Reader(data)
        reader.pos = 4
        reader.take("<I")  # format version: 2 and 3 share this layout
        n_tensors, n_kv = reader.take("<Q"), reader.take("<Q")
        meta = {}
        for _ in range(n_kv):
            key = reader.string()
            meta[key] = reader.value(reader.take("<I"))
        end = 0
        for _ in range(n_tensors):
            reader.string()
            dims = [reader.take("<Q") for _ in range(reader.take("<I"))]
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(reader.take("<I"))]
            count = 1
            for dim in dims:
                count *= dim
            end = max(end, reader.take("<Q") + count // block * size)
    except (struct.error, KeyError, ValueError, MemoryError) as exc:
        raise UserError(f"{path} is a damaged GGUF ({exc.__class__.__name__} in its header): "
                        "export or download it again") from exc
    align = int(meta.get("general.alignment") or 32)
    meta["_data_bytes"] = -(-reader.pos // align) * align + end
    return meta


def inspect_gguf(path: str | Path, adapter: bool = False) -> dict[str, Any]:
    """Check a GGUF before llama.cpp loads it: exists, is GGUF, complete, the right kind."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    meta = read_gguf_header(path)
    if path.stat().st_size < meta["_data_bytes"]:
        raise UserError(f"{path} is truncated ({path.stat().st_size} of {meta['_data_bytes']} bytes): "
                        "export or download it again")
    is_adapter = meta.get("general.type") == "adapter"
    if is_adapter != adapter:
        kind = "a LoRA adapter, not a model" if is_adapter else "a model, not a LoRA adapter"
        raise UserError(f"{path} is {kind}: choose a {'GGUF LoRA' if adapter else 'GGUF model'} here")
    return meta


@dataclass
class Generation:
    text: str
    completion_tokens: int
    first_token_s: float | None
    seconds: float
    finish_reason: str | None


class Engine:
    """One loaded GGUF (optionally with a GGUF LoRA): chat template, tokenizer, streaming."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int, lora_path: Path | None = None,
                 header: dict[str, Any] | None = None) -> None:
        from llama_cpp import Llama

        self.path, self.lora_path = Path(path), lora_path
        self.architecture = (header or inspect_gguf(self.path)).get("general.architecture")
        if lora_path and header is None:
            inspect_gguf(lora_path, adapter=True)
        started = time.perf_counter()
        try:
            self.llm = Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                             lora_path=str(lora_path) if lora_path else None, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise UserError(
                f"llama.cpp cannot load {self.path.name} (architecture {self.architecture!r}): this llama.cpp "
                "build does not support it, or the file is damaged; choose a GGUF of a supported family "
                "(llama, qwen2, mistral, phi3, gemma, ...)"
            ) from exc
        self.load_s = time.perf_counter() - started
        self.n_threads = self.n_threads_batch = n_threads
        self.template_source, self.formatter = self._chat_formatter()

    def _chat_formatter(self) -> tuple[str, Any]:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        text = lambda tok: self.llm.detokenize([tok], special=True).decode("utf-8", "replace") if tok >= 0 else ""
        source = "gguf" if template else "chatml (the GGUF has no chat template)"
        return source, Jinja2ChatFormatter(template or CHATML, eos_token=text(eos), bos_token=text(bos))

    @property
    def n_ctx(self) -> int:
        return self.llm.n_ctx()

    def set_threads(self, n_threads: int, n_threads_batch: int | None = None) -> None:
        """Decode (and prompt) threads for the next generation, on the loaded context (no reload)."""
        n_threads_batch = n_threads_batch or n_threads
        if (n_threads, n_threads_batch) != (self.n_threads, self.n_threads_batch):
            self.llm._ctx.set_n_threads(n_threads, n_threads_batch)
            self.llm.n_threads, self.llm.n_threads_batch = n_threads, n_threads_batch
            self.n_threads, self.n_threads_batch = n_threads, n_threads_batch

    def prompt_tokens(self, messages: list[dict[str, str]]) -> tuple[list[int], list[str]]:
        """Token ids of the rendered chat prompt, and the template's stop strings."""
        try:
            result = self.formatter(messages=messages)
        except Exception:  # templates that refuse a system turn (Gemma, Mistral): fold it into the user turn
            if messages and messages[0]["role"] == "system" and len(messages) > 1:
                content = messages[0]["content"] + "\n\n" + messages[1]["content"]
                merged = {"role": messages[1]["role"], "content": content}
                result = self.formatter(messages=[merged, *messages[2:]])
            else:
                raise
        tokens = self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stops = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, [s for s in stops if s]

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def generate(self, tokens: list[int], stops: list[str], settings: Any, max_tokens: int,
                 on_token: Callable[[str], None] | None = None) -> Generation:
        """Stream a completion of `tokens`; sampling from a ChatConfig-like `settings`."""
        from llama_cpp import StoppingCriteriaList

        calls = [0]

        def count(_ids: Any, _logits: Any) -> bool:  # a plain call per sampled token; never stops
            calls[0] += 1
            return False

        # Evaluate the whole prompt afresh: reusing a cached prefix changes the batch shapes, and
        # with them the last bits of the logits, so the same question could get another answer.
        self.llm.reset()
        stream = self.llm.create_completion(
            prompt=tokens, max_tokens=max_tokens, temperature=settings.temperature, top_p=settings.top_p,
            min_p=settings.min_p, top_k=settings.sample_top_k, repeat_penalty=settings.repeat_penalty,
            seed=settings.seed, stop=stops, stopping_criteria=StoppingCriteriaList([count]), stream=True,
        )
        started, first, parts, finish = time.perf_counter(), None, [], None
        for chunk in stream:
            choice = chunk["choices"][0]
            if choice["text"]:
                first = first or time.perf_counter()
                parts.append(choice["text"])
                if on_token is not None:
                    on_token(choice["text"])
            finish = choice.get("finish_reason") or finish
        seconds = time.perf_counter() - started
        # llama-cpp-python asks the criteria once per sampled token and once more after the loop;
        # a "stop" ends on a sampled end-of-turn token, which is not part of the answer
        produced = max(0, calls[0] - 1 - (finish == "stop"))
        return Generation("".join(parts), produced, first - started if first else None, seconds, finish)

    def close(self) -> None:
        if getattr(self, "llm", None) is not None:
            self.llm.close()
            self.llm = None


class EngineCache:
    """At most `capacity` loaded engines, least recently used closed first."""

    def __init__(self) -> None:
        self._engines: OrderedDict[tuple, Engine] = OrderedDict()
        self.lock = threading.RLock()  # llama.cpp contexts are not thread-safe: one generation at a time

    @staticmethod
    def _key(path: Path, lora: Path | None, n_ctx: int) -> tuple:
        stamp = lambda p: (str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) if p else None
        return (stamp(path), stamp(lora), n_ctx)

    def get(self, path: Path, n_ctx: int, lora_path: Path | None = None, capacity: int = 2) -> Engine:
        """The loaded engine of this file (loading it, and closing the least recently used, if
        needed). Threads are set per answer (`Engine.set_threads`), so a change needs no reload."""
        path = Path(path).expanduser()
        for file in (path, lora_path):
            if file is not None and not Path(file).is_file():
                raise UserError(f"model file not found: {file}")
        key = self._key(path, lora_path, n_ctx)
        with self.lock:
            if key in self._engines:
                self._engines.move_to_end(key)
                return self._engines[key]
            header = inspect_gguf(path)  # a bad file is refused before any loaded engine is given up
            if lora_path:
                inspect_gguf(lora_path, adapter=True)
            # a file re-exported in place is a new model: drop the engine of its old content
            for stale in [k for k in self._engines if k[0][0] == key[0][0] and k[1] == key[1]]:
                self._engines.pop(stale).close()
            while len(self._engines) >= max(1, capacity):
                self._engines.popitem(last=False)[1].close()
            engine = Engine(path, n_ctx, 1, lora_path, header)
            self._engines[key] = engine
            return engine

    def engines(self) -> list[Engine]:
        """Loaded engines, least recently used first."""
        with self.lock:
            return list(self._engines.values())

    def loaded(self) -> list[Path]:
        return [engine.path for engine in self.engines()]

    def close_all(self) -> None:
        with self.lock:
            while self._engines:
                self._engines.popitem(last=False)[1].close()


ENGINES = EngineCache()
# Closed before interpreter teardown: llama-cpp-python's own __del__ then finds nothing to free.
atexit.register(ENGINES.close_all)
