"""The chat format: Llama-3 headers, rendered message by message so that a prompt's ids plus an
action's ids are exactly the ids of the longer dialogue (no re-tokenization drift between rollout
and training).

    <|begin_of_text|> [<|start_header_id|> role <|end_header_id|> suffix content <|eot_id|>]*
    <|start_header_id|> assistant <|end_header_id|> suffix        <- generation prompt

`suffix` is the tokenizer's `header_suffix`, encoded on its own: "\n\n" for a Hugging Face
Llama-3 tokenizer, which makes this exactly Meta's `ChatFormat.encode_dialog_prompt`
(llama_models/llama3/chat_format.py: each piece, role, "\n\n" and content, is encoded
separately; tests/data/test_chat_format.py compares token for token); empty for the embedded
sentencepiece models, whose checkpoints were trained without it.

An action (what the agent generates in one turn) is `content_ids + [eot_id]`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweet_megatron.data.tokenizer import Tokenizer

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"message role {self.role!r}: use one of {ROLES}")


def header_ids(tok: Tokenizer, role: str) -> list[int]:
    """Ids that open a message of `role` (for Llama-3: start, role, end, "\n\n")."""
    suffix = tok.encode(tok.header_suffix) if tok.header_suffix else []
    return [tok.start_header_id, *tok.encode(role), tok.end_header_id, *suffix]


def message_ids(tok: Tokenizer, msg: Message) -> list[int]:
    """Ids of one whole message: header, content, end-of-turn."""
    return [*header_ids(tok, msg.role), *tok.encode(msg.content), tok.eot_id]


def action_ids(tok: Tokenizer, content: str) -> list[int]:
    """Ids of an assistant action as the model would generate it (content then end-of-turn)."""
    return [*tok.encode(content), tok.eot_id]


def render_prompt(tok: Tokenizer, messages: list[Message]) -> list[int]:
    """BOS, every message, then the assistant header: the ids the agent continues from."""
    ids = [tok.bos_id]
    for msg in messages:
        ids.extend(message_ids(tok, msg))
    ids.extend(header_ids(tok, "assistant"))
    return ids


def render_dialogue(tok: Tokenizer, messages: list[Message]) -> tuple[list[int], list[int]]:
    """A whole dialogue as ids, with the index of the assistant turn each token belongs to.

    Returns (ids, turn_of_token): turn_of_token[i] is k >= 0 when ids[i] is part of the k-th
    assistant action (its content and end-of-turn, not its header), and -1 otherwise. Equal to
    concatenating render_prompt(...) with action_ids(...) turn by turn.
    """
    ids = [tok.bos_id]
    turn = [-1]
    k = 0
    for msg in messages:
        head = header_ids(tok, msg.role)
        ids.extend(head)
        turn.extend([-1] * len(head))
        body = [*tok.encode(msg.content), tok.eot_id]
        ids.extend(body)
        turn.extend([k if msg.role == "assistant" else -1] * len(body))
        if msg.role == "assistant":
            k += 1
    return ids, turn
