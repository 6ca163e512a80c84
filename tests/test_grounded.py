"""Grounded training examples on the real sample: real memory search, real embeddings, the chat's
own prompt layout, the replies cited by the source that holds them."""
import re
from pathlib import Path

import pytest

from rhizome.config import BuildConfig, ChatConfig
from rhizome.train.data import read_split
from rhizome.train.grounded import cited_reply, ground_examples, support
from rhizome.workspace import Workspace

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "sample"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from rhizome.curate import build_dataset
    from rhizome.ingest import ingest_paths

    ws = Workspace(tmp_path_factory.mktemp("grounded") / "ws").ensure()
    ingest_paths(ws, [SAMPLE])
    build_dataset(ws, BuildConfig())
    return ws


def test_every_chosen_example_is_prompted_as_the_chat_prompts(built):
    examples = read_split(built, "train")
    grounded, count = ground_examples(built, examples, 1.0, seed=0)
    assert count == len(examples) and len(grounded) == len(examples)
    chat = ChatConfig()
    cited = 0
    for before, after in zip(examples, grounded):
        messages = after["messages"]
        assert messages[0] == {"role": "system", "content": chat.system_prompt}
        question, reply = before["messages"][-2]["content"], before["messages"][-1]["content"]
        assert messages[-2]["content"].startswith("[1] ")  # the compact layout: sources first
        assert messages[-2]["content"].endswith(f"citing [1]: {question}")
        number = re.match(r"\[(\d)\] ", messages[-1]["content"])
        assert messages[-1]["content"][number.end() if number else 0:] == reply  # the reply, at most marked
        if number:
            cited += 1
            block = messages[-2]["content"].split(f"[{number.group(1)}] ", 1)[1]
            assert support(reply, block) >= 0.3  # cites a source holding the reply's words
    # memory holds every message, so most replies are found and cited; some are not
    assert 0.5 * count <= cited <= count


def test_a_seeded_share_is_grounded_and_repeatable(built):
    examples = read_split(built, "train")
    first, count = ground_examples(built, examples, 0.3, seed=7)
    second, _ = ground_examples(built, examples, 0.3, seed=7)
    assert count == round(0.3 * len(examples)) and first == second
    assert sum(1 for e in first if e.get("grounded")) == count
    assert [e for e in first if not e.get("grounded")] == [e for e, g in zip(examples, first) if not g.get("grounded")]
    assert ground_examples(built, examples, 0.0, seed=7) == (examples, 0)


def test_no_memory_leaves_examples_bare(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    examples = [{"messages": [{"role": "user", "content": "How do I feed a starter?"},
                              {"role": "assistant", "content": "Flour and water, daily."}]}]
    assert ground_examples(ws, examples, 1.0, seed=0) == (examples, 0)


def test_a_reply_is_cited_only_by_a_source_that_holds_it():
    hits = [{"text": "Espresso wants a fine grind and 25 seconds."},
            {"text": "Feed the sourdough starter with rye flour every morning."}]
    assert cited_reply("I feed my starter rye flour each morning.", hits) == \
        "[2] I feed my starter rye flour each morning."
    assert cited_reply("The train to Lyon leaves at noon.", hits) == "The train to Lyon leaves at noon."
