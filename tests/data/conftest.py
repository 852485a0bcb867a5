"""A Hugging Face Llama-3 tokenizer directory made once per session from the tokenizer.model that
the llama-models package ships (a test dependency), and Meta's own encoder over the same file."""

import pytest


@pytest.fixture(scope="session")
def llama3_hf_dir(tmp_path_factory):
    from sweet_megatron.data.llama3 import write_llama3_hf_tokenizer

    return write_llama3_hf_tokenizer(tmp_path_factory.mktemp("llama3") / "tokenizer")


@pytest.fixture(scope="session")
def meta_tokenizer():
    from llama_models.llama3.tokenizer import Tokenizer

    return Tokenizer.get_instance()


@pytest.fixture(scope="session")
def llama3_tok(llama3_hf_dir):
    """The project's tokenizer.kind=hf loaded from that directory."""
    from sweet_megatron.data.tokenizer import load_tokenizer

    return load_tokenizer("hf", llama3_hf_dir)
