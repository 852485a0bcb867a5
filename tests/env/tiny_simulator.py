"""The simulated person on a real engine, for the simulator=engine tests of every environment: a tiny
random Llama saved as a Hugging Face directory with its own sentencepiece tokenizer, the config that
points at it, and a wrapper recording what the engine is fed and generates."""

from __future__ import annotations

from pathlib import Path


def save_tiny_simulator(out: Path, texts: list[str], vocab_size: int, max_positions: int) -> Path:
    """A sentencepiece tokenizer trained on `texts` (out/tokenizer.model) and a 2-layer random Llama
    (out/hf) sized to it; returns `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sweet_megatron.data.tokenizer import train_sentencepiece

    tok = train_sentencepiece(texts, out / "tokenizer.model", vocab_size=vocab_size)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                      tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(out / "hf", safe_serialization=True)
    return out


def engine_config(tiny_simulator_dir: Path, **kw):
    from sweet_megatron.config import SimulatorConfig

    return SimulatorConfig(kind="engine", checkpoint=str(tiny_simulator_dir / "hf"), tokenizer_kind="sentencepiece",
                           tokenizer_path=str(tiny_simulator_dir / "tokenizer.model"), **kw)


class Recording:
    """Wraps the real engine: records what the simulator model is fed and what it generated."""

    def __init__(self, engine):
        self.engine, self.prompts, self.outputs = engine, [], []

    def generate(self, prompts, params):
        out = self.engine.generate(prompts, params)
        self.prompts.append(prompts)
        self.outputs.append([g[0].token_ids for g in out])
        return out
