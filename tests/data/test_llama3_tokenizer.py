"""The Hugging Face directory written from Meta's tokenizer.model encodes as Meta's own tiktoken
encoder (llama_models.llama3.tokenizer.Tokenizer), loaded offline through tokenizer.kind=hf."""

import json

import pytest

from sweet_megatron.checkpoint.convert import main as convert_main
from sweet_megatron.data.llama3 import llama3_special_tokens, write_llama3_hf_tokenizer
from sweet_megatron.data.tokenizer import load_tokenizer

TEXTS = [
    "",
    "Hello, world!",
    "I'LL tell you: we're done, aren't we? It's 12345678 o'clock.",
    "def compute_fee(amount: float) -> float:\n    if amount > 1_000:\n        return round(amount * 0.03, 2)\n\treturn 0.0\n",
    "    \n\n\n   \t\t  x  \r\n\r\n  y      ",  # whitespace runs, tabs, CRLF
    "naïve café, Straße, 日本語のテキスト, Привет, مرحبا, emoji 🤖🧪 and 👩‍💻",
    "```python\nprint({'a': [1, 2.5e-3, None]})\n```  // trailing; #comment <tag attr=\"v\">",
    "<|eot_id|> text <|start_header_id|>user<|end_header_id|> and <|begin_of_text|>",  # specials as plain text
    "I WANT TO ANSWER:\ndef f(x):\n    return x ** 2 if x >= 0 else -x  # ≥ 0",
    "a" * 300 + " " + "9" * 40,
]


def test_special_tokens_follow_meta(llama3_tok, meta_tokenizer):
    tok = llama3_tok
    assert tok.vocab_size == meta_tokenizer.n_words == 128_256
    names = llama3_special_tokens()
    assert {n: 128_000 + i for i, n in enumerate(names)} == meta_tokenizer.special_tokens
    assert (tok.bos_id, tok.eos_id, tok.eot_id) == (meta_tokenizer.bos_id, meta_tokenizer.eos_id, meta_tokenizer.eot_id)
    assert tok.start_header_id == meta_tokenizer.special_tokens["<|start_header_id|>"]
    assert tok.end_header_id == meta_tokenizer.special_tokens["<|end_header_id|>"]


@pytest.mark.parametrize("text", TEXTS)
def test_encodings_equal_meta(llama3_tok, meta_tokenizer, text):
    tok = llama3_tok
    ids = tok.encode(text)
    assert ids == meta_tokenizer.encode(text, bos=False, eos=False)
    if "<|" not in text:
        assert tok.decode(ids) == text


def test_loads_with_transformers_alone(llama3_hf_dir, meta_tokenizer):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(llama3_hf_dir), local_files_only=True)
    assert json.loads((llama3_hf_dir / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert hf.encode("Hi there") == meta_tokenizer.encode("Hi there", bos=True, eos=False)  # BOS as Meta's release


def test_cli_writes_directory_and_refuses_bad_input(tmp_path, capsys, meta_tokenizer):
    from pathlib import Path

    from llama_models.llama3 import tokenizer as meta_module

    src = Path(meta_module.__file__).parent / "tokenizer.model"
    # a small tiktoken file: Meta's first 300 ranks (the 256 bytes and the first merges)
    small = tmp_path / "small.model"
    small.write_bytes(b"".join(src.read_bytes().splitlines(keepends=True)[:300]))
    assert convert_main(["llama3-tokenizer", "--tiktoken", str(small), "--out", str(tmp_path / "tok")]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(tmp_path / "tok")
    tok = load_tokenizer("hf", tmp_path / "tok")
    assert (tok.vocab_size, tok.bos_id, tok.eot_id) == (300 + 256, 300, 309)
    assert tok.decode(tok.encode("the cat")) == "the cat"
    assert convert_main(["llama3-tokenizer", "--tiktoken", str(small), "--out", str(tmp_path / "tok")]) == 2
    assert "exists" in capsys.readouterr().err
    bad = tmp_path / "bad.model"
    bad.write_text("aGk= 0\nnot-a-line\n")
    assert convert_main(["llama3-tokenizer", "--tiktoken", str(bad), "--out", str(tmp_path / "t2")]) == 2
    assert f"{bad}:2" in capsys.readouterr().err and not (tmp_path / "t2").exists()
    with pytest.raises(FileNotFoundError, match="tiktoken file"):
        write_llama3_hf_tokenizer(tmp_path / "t3", tmp_path / "missing.model")
