"""A byte-level tokenizer with the Llama-3 chat specials: ids 0-255 are UTF-8 bytes, 256-260 the
specials. For playing and testing episodes without a trained tokenizer model; it satisfies
sweet_megatron.data.tokenizer.Tokenizer and round-trips any text exactly."""

from __future__ import annotations

from collections.abc import Iterable

from sweet_megatron.data.tokenizer import SPECIAL_TOKENS


class ByteTokenizer:
    def __init__(self) -> None:
        ids = {tok: 256 + i for i, tok in enumerate(SPECIAL_TOKENS)}
        self.vocab_size = 256 + len(SPECIAL_TOKENS)
        self.bos_id = ids["<|begin_of_text|>"]
        self.eos_id = ids["<|end_of_text|>"]
        self.start_header_id = ids["<|start_header_id|>"]
        self.end_header_id = ids["<|end_header_id|>"]
        self.eot_id = ids["<|eot_id|>"]
        self.pad_id = self.eos_id
        self.header_suffix = ""

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8", "surrogatepass"))

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", "replace")
