"""A Hugging Face tokenizer directory made from Meta's Llama-3 `tokenizer.model` (tiktoken BPE ranks).

    sweet-convert llama3-tokenizer --tiktoken tokenizer.model --out DIR

Meta ships Llama-3 with a tiktoken file (one "base64(token bytes) rank" line per BPE rank, 128,000
of them) plus 256 special tokens that its `tokenizer.py` appends at ids 128000-128255. The
directory written here holds `tokenizer.json` (built by transformers' own `TikTokenConverter`,
with Meta's split regex, then the special tokens added in Meta's order so their ids follow the
ranks) and `tokenizer_config.json`, and loads offline with `AutoTokenizer.from_pretrained(DIR)`,
i.e. as `tokenizer.kind=hf tokenizer.path=DIR`. Its ids equal Meta's encoder's
(tests/data/test_llama3_tokenizer.py checks them against `llama_models`' own `Tokenizer`).

With no `--tiktoken`, the file shipped in the `llama-models` PyPI package
(`llama_models/llama3/tokenizer.model`) is used when that package is installed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Meta's pre-tokenizer regex for Llama 3 (`Tokenizer.pat_str` in llama_models/llama3/tokenizer.py)."""

NUM_SPECIAL_TOKENS = 256
NAMED_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
)
"""The first special tokens in Meta's order; the rest are `<|reserved_special_token_2|>`, ... ."""


def llama3_special_tokens() -> list[str]:
    """All 256 special tokens in id order (the first has id len(ranks), i.e. 128000)."""
    reserved = [f"<|reserved_special_token_{2 + i}|>" for i in range(NUM_SPECIAL_TOKENS - len(NAMED_SPECIAL_TOKENS))]
    return [*NAMED_SPECIAL_TOKENS, *reserved]


def shipped_tiktoken_file() -> Path:
    """`llama_models/llama3/tokenizer.model` of the installed `llama-models` package."""
    try:
        import llama_models
    except ImportError:
        raise FileNotFoundError("no --tiktoken file given and the llama-models package is not installed: "
                                "pass --tiktoken <Meta's tokenizer.model> or pip install llama-models==0.3.0") from None
    path = Path(llama_models.__file__).parent / "llama3" / "tokenizer.model"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed llama-models package; pass --tiktoken")
    return path


def write_llama3_hf_tokenizer(out_dir: str | os.PathLike, tiktoken_file: str | os.PathLike | None = None) -> Path:
    """Write a Hugging Face tokenizer directory for Meta's Llama-3 BPE file; returns the directory.

    `tiktoken_file` defaults to the one in the installed llama-models package. Raises
    FileExistsError if `out_dir` exists (never overwritten) and ValueError for a file that is not
    a tiktoken rank file. Written to `<out_dir>.tmp-<pid>` and renamed at the end.
    """
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    src = Path(tiktoken_file) if tiktoken_file is not None else shipped_tiktoken_file()
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} exists: refusing to overwrite it (choose a new --out)")
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such tiktoken file (Meta's Llama-3 tokenizer.model)")
    num_ranks = _count_ranks(src)
    specials = llama3_special_tokens()
    # The converter adds the special tokens after the ranks, in list order: ids num_ranks + i.
    backend = TikTokenConverter(vocab_file=str(src), pattern=LLAMA3_SPLIT_PATTERN,
                                extra_special_tokens=specials).converted()
    bos = specials[0]
    # As Meta's Hugging Face release: encode(text) with special tokens adds <|begin_of_text|> only.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
        special_tokens=[(bos, num_ranks)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token="<|eot_id|>",
                                  model_max_length=131072, clean_up_tokenization_spaces=False)
    got = {t: tok.convert_tokens_to_ids(t) for t in (bos, "<|eot_id|>", specials[-1])}
    want = {bos: num_ranks, "<|eot_id|>": num_ranks + 9, specials[-1]: num_ranks + NUM_SPECIAL_TOKENS - 1}
    if got != want:  # transformers changed how the converter numbers added tokens
        raise RuntimeError(f"special token ids {got} != {want}: this transformers version numbers them differently")
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    try:
        tok.save_pretrained(str(tmp))
        _portable_config(tmp / "tokenizer_config.json")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _portable_config(path: Path) -> None:
    """Name the class as Meta's Hugging Face release does, so that transformers 4.x loads the
    directory too (transformers 5 writes its own 'TokenizersBackend', unknown to 4.x)."""
    import json

    cfg = json.loads(path.read_text())
    cfg.pop("backend", None)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(cfg, indent=2) + "\n")


def _count_ranks(path: Path) -> int:
    """Number of BPE ranks in a tiktoken file, checking that each line is 'base64 rank'."""
    import base64
    import binascii

    n = 0
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) != 2:
                    raise ValueError
                base64.b64decode(parts[0], validate=True)
                rank = int(parts[1])
            except (ValueError, binascii.Error):
                raise ValueError(f"{path}:{lineno}: not a tiktoken rank line ('<base64 token> <rank>'); "
                                 "pass Meta's Llama-3 tokenizer.model") from None
            if rank != n:
                raise ValueError(f"{path}:{lineno}: rank {rank}, expected {n} (ranks must be 0, 1, 2, ...)")
            n += 1
    if n == 0:
        raise ValueError(f"{path}: empty tiktoken file")
    return n
