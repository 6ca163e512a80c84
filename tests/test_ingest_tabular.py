"""CSV, Parquet and datasets.save_to_disk folders, with detected and overridden columns."""
import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rhizome.config import IngestConfig
from rhizome.ingest import ingest_paths
from rhizome.workspace import UserError, read_jsonl


def pair(prompt, reply):
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]


def test_csv_detects_pairs_messages_and_falls_back_to_longest_text(ws, tmp_path):
    (tmp_path / "faq.csv").write_bytes("Question;Answer\nQu'est-ce?;Un café\n;empty\n".encode("cp1252"))
    turns = json.dumps([{"role": "user", "content": "hey"}, {"role": "assistant", "content": "ho"}])
    (tmp_path / "chats.csv").write_text('id,messages\n1,"' + turns.replace('"', '""') + '"\n2,not json\n')
    (tmp_path / "misc.csv").write_text("id,body_of_note\n7,A longer note about roots.\n")
    report = ingest_paths(ws, [tmp_path / "faq.csv", tmp_path / "chats.csv", tmp_path / "misc.csv"])
    records = list(read_jsonl(ws.corpus))
    assert [(r["source"], r.get("messages") or r["text"]) for r in records] == [
        ("csv", pair("Qu'est-ce?", "Un café")), ("csv", pair("hey", "ho")), ("csv", "A longer note about roots.")]
    assert records[0]["origin"] == {"file": "faq.csv", "index": 0}
    entries = {e["file"]: e for e in report["files"]}
    assert entries["faq.csv"]["counts"]["dropped"] == {"empty_row": 1}
    assert entries["chats.csv"]["counts"]["dropped"] == {"empty_row": 1, "malformed_messages": 1}
    assert entries["misc.csv"]["reason"].endswith(
        "no known column names; used 'body_of_note' as text (set text_column to choose)")


def test_column_overrides_and_a_missing_column(ws, tmp_path):
    (tmp_path / "log.csv").write_text("asked,said,extra\nWhy?,Because.,x\n")
    config = IngestConfig(prompt_column="asked", response_column="said")
    ingest_paths(ws, [tmp_path / "log.csv"], config)
    record, = read_jsonl(ws.corpus)
    assert record["messages"] == pair("Why?", "Because.")
    with pytest.raises(UserError, match=r"log\.csv has no column 'missing'"):
        ingest_paths(ws, [tmp_path / "log.csv"], IngestConfig(text_column="missing"))


def test_parquet_and_saved_dataset_dict(ws, tmp_path):
    table = pa.table({"instruction": ["Add", "Sub"], "input": ["1+1", ""], "output": ["2", "0"]})
    pq.write_table(table, tmp_path / "alpaca.parquet")
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["first doc", "second doc"]}),
        "test": datasets.Dataset.from_dict({"text": ["third doc"]})})
    dd.save_to_disk(str(tmp_path / "hfdata"))
    report = ingest_paths(ws, [tmp_path / "alpaca.parquet", tmp_path / "hfdata"])
    records = list(read_jsonl(ws.corpus))
    assert [r["messages"] for r in records[:2]] == [pair("Add\n\n1+1", "2"), pair("Sub", "0")]
    assert [(r["source"], r["text"], r["origin"]["index"]) for r in records[2:]] == [
        ("hf_dataset", "first doc", "train:0"), ("hf_dataset", "second doc", "train:1"),
        ("hf_dataset", "third doc", "test:0")]
    assert [(e["file"], e["format"], e["status"]) for e in report["files"]] == [
        ("alpaca.parquet", "parquet", "ok"), ("hfdata", "hf_dataset", "ok")]
