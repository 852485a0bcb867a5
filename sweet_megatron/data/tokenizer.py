"""Tokenizers: a sentencepiece model trained offline from text the project generates, and
Hugging Face tokenizer files for real Llama-3.x checkpoints, behind one small interface.

Both expose the Llama-3 chat special tokens, so the chat format (data/chat.py) has the same
structure for the tiny CPU model and for a real 8B/70B checkpoint. One difference is a property of
the tokenizer, `header_suffix`: Meta's Llama-3 format puts "\n\n" after `<|end_header_id|>`
(HFTokenizer, byte-identical to llama_models' ChatFormat); the embedded sentencepiece models were
trained without it and keep their own format (empty suffix).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)


class Tokenizer(Protocol):
    """What the rest of the code needs from a tokenizer."""

    vocab_size: int
    bos_id: int
    eos_id: int
    eot_id: int
    pad_id: int
    start_header_id: int
    end_header_id: int
    header_suffix: str
    """Text encoded after `<|end_header_id|>` in every message header ("\n\n" for Llama-3)."""

    def encode(self, text: str) -> list[int]:
        """Text to ids, with no BOS/EOS added."""

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text; special tokens are dropped."""


class SentencePieceTokenizer:
    """A sentencepiece BPE model with the Llama-3 chat specials as user-defined symbols.

    Byte fallback is on, so any UTF-8 text (real ColBench code included) encodes without <unk>.
    Its chat headers carry no "\n\n" (header_suffix ""): the shipped checkpoints were trained so.
    """

    header_suffix = ""

    def __init__(self, model_file: str | os.PathLike):
        import sentencepiece as spm

        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(
                f"sentencepiece model {path} not found: train one with "
                "sweet_megatron.data.tokenizer.train_sentencepiece(texts, out_file)"
            )
        self.model_file = str(path)
        self._sp = spm.SentencePieceProcessor(model_file=self.model_file)
        self.vocab_size = self._sp.get_piece_size()
        ids = {tok: self._sp.piece_to_id(tok) for tok in SPECIAL_TOKENS}
        missing = [tok for tok, i in ids.items() if i == self._sp.unk_id()]
        if missing:
            raise ValueError(f"{path}: missing special tokens {missing}; retrain with train_sentencepiece")
        self.bos_id = ids["<|begin_of_text|>"]
        self.eos_id = ids["<|end_of_text|>"]
        self.eot_id = ids["<|eot_id|>"]
        self.start_header_id = ids["<|start_header_id|>"]
        self.end_header_id = ids["<|end_header_id|>"]
        self.pad_id = self._sp.pad_id() if self._sp.pad_id() >= 0 else self.eos_id
        self._special = set(ids.values())

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode([int(i) for i in ids if int(i) not in self._special])


NUMBER_PIECES_MIN_VOCAB = 1536
"""1010 number and digit pieces, 256 byte pieces, the special tokens and room for merges."""


def train_sentencepiece(
    texts: Iterable[str], out_file: str | os.PathLike, vocab_size: int = 1024, number_pieces: bool = False,
    markup_pieces: bool = False,
) -> SentencePieceTokenizer:
    """Train a BPE sentencepiece model on `texts` and write it to `out_file` (atomically).

    Digits are split one by one. With `number_pieces`, a space followed by a number 0-999 is one
    piece as well (" 750" is one token, as a word is), so that a small model copies a stated number
    into code as one token; that needs vocab_size of at least NUMBER_PIECES_MIN_VOCAB. With
    `markup_pieces`, pieces may join letters, digits and punctuation (`class="bg-blue`, `-600">`),
    which shortens HTML about threefold; digits are then not split.

    Deterministic for the same texts and vocab size (single-threaded training).
    """
    import sentencepiece as spm

    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    sentences = [line for text in texts for line in text.splitlines() if line.strip()]
    if not sentences:
        raise ValueError("train_sentencepiece: no text to train on")
    symbols = list(SPECIAL_TOKENS)
    if number_pieces:
        if vocab_size < NUMBER_PIECES_MIN_VOCAB:
            raise ValueError(f"train_sentencepiece: vocab_size={vocab_size} leaves no room for the 1000 number pieces; "
                             f"use at least {NUMBER_PIECES_MIN_VOCAB} or number_pieces=False")
        symbols += [f"\u2581{i}" for i in range(1000)] + [str(i) for i in range(10)]  # \u2581: sentencepiece's space
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        user_defined_symbols=symbols,
        character_coverage=1.0,
        split_digits=not markup_pieces,
        split_by_unicode_script=not markup_pieces,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        num_threads=1,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        unk_id=0,
        minloglevel=2,
    )
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, out)
    return SentencePieceTokenizer(out)


class HFTokenizer:
    """Hugging Face tokenizer files (tokenizer.json etc.) of a Llama-3.x checkpoint, loaded offline.

    Encodes as Meta's `Tokenizer.encode` does in its chat format: text that spells a special token
    ("<|eot_id|>" inside a user's message or code) is encoded as plain text, never as the special
    id, so no content can close a turn or open a header. Headers end with "\n\n" (Llama-3's format).
    """

    header_suffix = "\n\n"

    def __init__(self, path: str | os.PathLike):
        from transformers import AutoTokenizer

        self.path = str(path)
        self._tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        vocab = self._tok.get_vocab()
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"{path}: tokenizer lacks Llama-3 chat tokens {missing}")
        self.vocab_size = len(self._tok)
        self.bos_id = vocab["<|begin_of_text|>"]
        self.eos_id = vocab["<|end_of_text|>"]
        self.eot_id = vocab["<|eot_id|>"]
        self.start_header_id = vocab["<|start_header_id|>"]
        self.end_header_id = vocab["<|end_header_id|>"]
        self.pad_id = self._tok.pad_token_id if self._tok.pad_token_id is not None else self.eos_id

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False, split_special_tokens=True))

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)


def load_tokenizer(kind: str, path: str | os.PathLike) -> Tokenizer:
    """`kind` is 'sentencepiece' (a .model file) or 'hf' (a directory of tokenizer files)."""
    if kind == "sentencepiece":
        return SentencePieceTokenizer(path)
    if kind == "hf":
        return HFTokenizer(path)
    raise ValueError(f"tokenizer kind {kind!r}: use 'sentencepiece' or 'hf'")
