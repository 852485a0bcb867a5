"""The project's chat rendering with a Hugging Face Llama-3 tokenizer equals Meta's own dialog
encoder (llama_models.llama3.chat_format.ChatFormat) token for token, and its label boundaries
(which tokens belong to which assistant action) are exactly Meta's assistant content + <|eot_id|>."""

from llama_models.datatypes import RawMessage
from llama_models.llama3.chat_format import ChatFormat

from sweet_megatron.data.chat import Message, action_ids, render_dialogue, render_prompt

CODE = "def fee(amount, rate=0.03):\n    if amount <= 0:\n        return 0.0\n\n    return round(amount * rate, 2)\n"
DIALOGUE = [
    Message("system", "You help a person write a Python function.\nAsk short questions; at most 10 rounds."),
    Message("user", "Write a fee calculator.\nThe signature of the function is: def fee(amount, rate)"),
    Message("assistant", "What rate should apply by default?"),
    Message("user", "3 percent, I think.  Rounded to cents."),
    Message("assistant", "Should a negative amount raise, or return 0?\n\n- raise\n- return 0"),
    Message("user", "Return 0.0 — never raise. (日本語 ok?)"),
    Message("assistant", "  Leading spaces and a tab\there."),
    Message("user", "<|eot_id|> is just text here"),
    Message("assistant", "Here is a draft:\n```python\n" + CODE + "```"),
    Message("user", "Looks right.\n\n\n"),
    Message("assistant", "I WANT TO ANSWER:\n" + CODE),
]


def meta_tokens(chat: ChatFormat, messages: list[Message]) -> list[int]:
    return chat.encode_dialog_prompt([RawMessage(role=m.role, content=m.content) for m in messages]).tokens


def test_ten_turn_dialogue_equals_meta_chat_format(llama3_tok, meta_tokenizer):
    chat = ChatFormat(meta_tokenizer)
    assert sum(m.role != "system" for m in DIALOGUE) == 10
    want = meta_tokens(chat, DIALOGUE)  # ends with Meta's generation prompt (assistant header + "\n\n")
    assert render_prompt(llama3_tok, DIALOGUE) == want
    ids, turn = render_dialogue(llama3_tok, DIALOGUE)
    gen_header = chat._encode_header("assistant")
    assert gen_header[-1] == meta_tokenizer.encode("\n\n", bos=False, eos=False)[0]
    assert ids == want[: -len(gen_header)]
    # every prompt the agent sees on the way equals Meta's generation prompt for that history
    for k, m in enumerate(DIALOGUE):
        if m.role == "assistant":
            assert render_prompt(llama3_tok, DIALOGUE[:k]) == meta_tokens(chat, DIALOGUE[:k])


def test_labels_cover_exactly_assistant_content_and_eot(llama3_tok, meta_tokenizer):
    chat = ChatFormat(meta_tokenizer)
    ids, turn = render_dialogue(llama3_tok, DIALOGUE)
    expected, pos, k = [-1], 1, 0  # <|begin_of_text|>
    for m in DIALOGUE:
        toks, _ = chat.encode_message(RawMessage(role=m.role, content=m.content), None)
        head = len(chat._encode_header(m.role))
        owner = k if m.role == "assistant" else -1
        expected += [-1] * head + [owner] * (len(toks) - head)
        if m.role == "assistant":
            labelled = [t for t, o in zip(ids, turn) if o == k]
            assert labelled == toks[head:] == action_ids(llama3_tok, m.content)
            assert labelled[-1] == meta_tokenizer.eot_id
            k += 1
        pos += len(toks)
    assert turn == expected and pos == len(ids) and k == 5


def test_episode_critic_and_simulator_prompts_use_the_same_rendering(llama3_tok, meta_tokenizer):
    """The prompts the episode loop builds incrementally (agent), the critic's view and the LLM
    simulator's prompt are all Meta's encoding of their messages."""
    from sweet_megatron.env.episode import run_episodes
    from sweet_megatron.env.simulators import EngineChatBackend, LLMSimulator
    from sweet_megatron.env.synthetic.demos import ScriptedAgent
    from sweet_megatron.env.synthetic.family import generate_tasks
    from sweet_megatron.env.synthetic.protocol import PROTOCOL
    from sweet_megatron.env.synthetic.simulator import SyntheticSimulator
    from sweet_megatron.rollout.base import Generation
    from sweet_megatron.training.episodes import critic_view

    chat = ChatFormat(meta_tokenizer)
    tasks = generate_tasks(4, seed=3)
    episodes = run_episodes(ScriptedAgent(llama3_tok, tasks=tasks), tasks, SyntheticSimulator(), score=False,
                            protocol=PROTOCOL)
    assert max(len(e.turns) for e in episodes) >= 3
    for ep, task in zip(episodes, tasks):
        msgs = ep.messages()
        agent_at = [i for i, m in enumerate(msgs) if m.role == "assistant"]
        for k, turn in enumerate(ep.turns):
            assert turn.prompt_ids == meta_tokens(chat, msgs[: agent_at[k]])
        assert ep.token_ids(llama3_tok)[0] == meta_tokens(chat, msgs)[: -len(chat._encode_header("assistant"))]
        critic = critic_view(msgs, task)
        assert render_dialogue(llama3_tok, critic)[0] == meta_tokens(chat, critic)[: -len(chat._encode_header("assistant"))]

    seen = []

    class Recorder:  # an engine that records its prompts and replies with one fixed token
        def generate(self, prompts, params):
            seen.extend(prompts)
            return [[Generation(llama3_tok.encode("Yes."))] for _ in prompts]

    sim = LLMSimulator(EngineChatBackend(Recorder(), llama3_tok))
    dialogue = episodes[0].messages()[:2]
    assert sim.respond([tasks[0]], [dialogue]) == ["Yes."]
    conv = sim.conversation(tasks[0], dialogue)
    assert seen == [meta_tokens(chat, [Message(m["role"], m["content"]) for m in conv])]
