"""Clean stage: Unicode repair, artifacts, whitespace, drop reasons."""
from rhizome.curate.clean import clean_records, clean_text, drop_reason, wordlike_ratio
from rhizome.records import Message, Record


def conv(rid, *contents):
    roles = ["user", "assistant"]
    return Record(rid, "chatgpt", "conversation", messages=[Message(roles[i % 2], c) for i, c in enumerate(contents)])


def doc(rid, text):
    return Record(rid, "text", "document", text=text, origin={"file": f"{rid}.txt"})


def test_repairs_mojibake_and_strips_artifacts():
    text = "The cafÃ© opened\u200b in 2020【12†source】.\nCopy code\nIt serves <|endoftext|>espresso."
    assert clean_text(text) == "The café opened in 2020.\nIt serves espresso."


def test_whitespace_collapsed_outside_code_only():
    text = "Some   prose\t here.\n\n\n\nMore.\n```python\ndef f():\n    return   1\n```\n"
    out = clean_text(text)
    assert "Some prose here.\n\nMore." in out
    assert "    return   1" in out  # indentation and spacing inside the fence untouched


def test_drop_reasons():
    assert drop_reason("", 20) == "empty"
    assert drop_reason("Too short.", 20) == "too_short"
    assert drop_reason("0x1f 0x2e 1234 5678 #### $$$$ 99.99 %%% ---- ====", 20) == "non_linguistic"
    assert drop_reason("aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQgZGF0YQ" * 2, 20) == "non_linguistic"
    assert drop_reason("A perfectly ordinary English sentence about gardens.", 20) is None


def test_non_english_text_is_kept():
    chinese = "堆肥需要绿色和棕色材料的平衡，每周翻动一次让微生物获得空气。"
    german = "Kompost braucht eine Mischung aus grünem und braunem Material."
    assert wordlike_ratio(chinese) == 1.0
    assert drop_reason(chinese, 20) is None and drop_reason(german, 20) is None


def test_clean_records_counts_every_reason():
    records = [
        conv("ok", "How do I water tomatoes in summer?", "Water deeply twice a week, early in the morning."),
        conv("blank", "   ", "\u200b"),
        conv("short", "hi", "yo"),
        doc("symbols", "12 34 56 78 90 #### $$$ %%% ^^^ &&& *** 11 22 33"),
        conv("partly", "Copy code", "Mulch keeps the soil moist through dry weeks."),
    ]
    kept, drops = clean_records(records, min_chars=20)
    assert [r.id for r in kept] == ["ok", "partly"]
    assert drops == {"empty": 1, "too_short": 1, "non_linguistic": 1, "empty_message": 3}
    assert [m.role for m in kept[1].messages] == ["assistant"]  # boilerplate-only message removed
