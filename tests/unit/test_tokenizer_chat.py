"""A real sentencepiece model trained offline, and the chat format built on it."""

from __future__ import annotations

import pytest

from sweet_megatron.data.chat import Message, action_ids, render_dialogue, render_prompt
from sweet_megatron.data.tokenizer import SentencePieceTokenizer, train_sentencepiece

CORPUS = [
    "def compute_fee(amount):\n    return round(amount * 3 / 100, 2)",
    "What is the threshold? The threshold is 42 units.",
    "I WANT TO ANSWER: def f(x): return x + 1",
] * 20


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_sentencepiece(CORPUS, tmp_path_factory.mktemp("tok") / "sp.model", vocab_size=320)


def test_roundtrip_and_specials(tok):
    text = "def compute_fee(amount):\n    return amount * 7  # é"
    assert tok.decode(tok.encode(text)) == text  # byte fallback covers unseen characters
    assert len({tok.bos_id, tok.eos_id, tok.eot_id, tok.start_header_id, tok.end_header_id}) == 5
    assert tok.vocab_size == 320


def test_training_is_deterministic(tok, tmp_path):
    again = train_sentencepiece(CORPUS, tmp_path / "again.model", vocab_size=320)
    assert again.encode("What is the threshold?") == tok.encode("What is the threshold?")


def test_prompt_plus_action_equals_dialogue(tok):
    msgs = [Message("system", "Write a function."), Message("user", "Hi"), Message("assistant", "What is x?"),
            Message("user", "x is 3."), Message("assistant", "I WANT TO ANSWER: def f(): return 3")]
    ids, turn = render_dialogue(tok, msgs)
    prompt = render_prompt(tok, msgs[:2])
    a0 = action_ids(tok, msgs[2].content)
    assert ids[: len(prompt) + len(a0)] == prompt + a0
    assert [t for t in turn[len(prompt): len(prompt) + len(a0)]] == [0] * len(a0)
    assert turn[: len(prompt)] == [-1] * len(prompt)
    full_prompt = render_prompt(tok, msgs[:4])
    a1 = action_ids(tok, msgs[4].content)
    assert ids == full_prompt + a1
    assert turn[len(full_prompt):] == [1] * len(a1)


def test_missing_model_file_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_sentencepiece"):
        SentencePieceTokenizer(tmp_path / "nope.model")


def test_number_pieces_are_single_tokens(tmp_path):
    from sweet_megatron.env.synthetic.family import generate_tasks

    corpus = CORPUS + [t.problem_description + "\n" + t.ground_truth for t in generate_tasks(300)]
    tok = train_sentencepiece(corpus, tmp_path / "num.model", vocab_size=1600, number_pieces=True)
    stated, coded = tok.encode("The maximum is 750."), tok.encode("cost = min(cost, 750)")
    assert tok.encode("x 750")[-1] == stated[-2] == coded[-2]  # the same single token in prose and code
    for text in ("x = 1234567", "min(cost, 750), 2)", "f(3,4) 0.125"):
        assert tok.decode(tok.encode(text)) == text
    with pytest.raises(ValueError, match="number pieces"):
        train_sentencepiece(CORPUS, tmp_path / "small.model", vocab_size=1024, number_pieces=True)
