"""The actor stage ranks a turn state's candidate actions by the algorithm's own per-turn advantage
(`sweet_megatron.algorithms.turn_advantages`), not by a copy of it in the trainer: on a hand-made
example (one state, candidate actions of known token ids, a critic and a reference that are fixed
per-token log-prob tables), the scores `stages/critic.py score_candidates` gives order the
candidates exactly as turn_advantages over the candidates' own action tokens does, the pairs
`turn_pair_groups` forms choose the higher one, and a flipped sign would fail both checks."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from sweet_megatron.algorithms import turn_advantages
from sweet_megatron.config import load_config
from sweet_megatron.data.chat import Message
from sweet_megatron.data.packing import collate
from sweet_megatron.env.bytetok import ByteTokenizer
from sweet_megatron.env.colbench_backend.tasks import load_tasks
from sweet_megatron.training import episodes as ep
from sweet_megatron.training.stages.context import StageContext
from sweet_megatron.training.stages.critic import score_candidates

BETA = 0.5
CANDIDATES = ["What is the input?", "I WANT TO ANSWER: def f(): return 1", "zzz", "Which edge cases matter?"]


class _Table:
    """A stand-in model: the log-prob of a position is a fixed table's value of its label."""

    def __init__(self, table: torch.Tensor):
        self.table = table

    def token_logprobs(self, rows):
        out = []
        for row in rows:
            mb = collate([row])
            out.append(torch.where(mb["segment_ids"][0] >= 0, self.table[mb["labels"][0]], torch.zeros(())))
        return out


def _context(tok) -> StageContext:
    ctx = object.__new__(StageContext)  # only the scoring glue: no model is built
    ctx.cfg, ctx.tok = load_config([f"sweet.critic_beta={BETA}"]), tok
    ctx.model_cfg = SimpleNamespace(seq_length=4096)
    ctx.actor = SimpleNamespace(shares_prefixes=True)
    return ctx


def _hand_advantage(tok, text: str, critic: torch.Tensor, ref: torch.Tensor) -> float:
    """turn_advantages over the action's own tokens (its text and end-of-turn), one segment."""
    ids = torch.tensor(tok.encode(text) + [tok.eot_id])
    zeros = torch.zeros(len(ids), dtype=torch.long)
    return float(turn_advantages(critic[ids], ref[ids], zeros, 1, beta=BETA)[0])


def _same_order(scores: list[float], want: list[float]) -> bool:
    return sorted(range(len(scores)), key=scores.__getitem__) == sorted(range(len(want)), key=want.__getitem__)


def test_candidates_rank_by_the_algorithms_turn_advantages():
    tok = ByteTokenizer()
    task = load_tasks("builtin:colbench/backend_test_0-199.jsonl", limit=1)[0]
    states = [ep.TurnState(task, [Message("system", "describe the function")])]
    g = torch.Generator().manual_seed(3)
    critic = -torch.rand(tok.vocab_size, generator=g, dtype=torch.float64) * 4
    ref = -torch.rand(tok.vocab_size, generator=g, dtype=torch.float64) * 4
    ctx = _context(tok)

    scores = score_candidates(ctx, _Table(critic), _Table(ref), states, [CANDIDATES], with_reference=True)[0].tolist()
    want = [_hand_advantage(tok, c, critic, ref) for c in CANDIDATES]
    assert len(set(want)) == len(want)  # a strict order to compare
    assert _same_order(scores, want)
    assert not _same_order([-s for s in scores], want)  # the check sees a flipped sign

    # The pairs the actor trains on choose the candidate of the higher advantage.
    _, _, texts = ep.turn_pair_groups(tok, states, [CANDIDATES], torch.tensor([scores]), pairs_per_turn=2, seed=0)
    value = dict(zip(CANDIDATES, want, strict=True))
    assert texts and all(value[chosen] > value[rejected] for _, chosen, rejected in texts)
    best = max(CANDIDATES, key=value.__getitem__)
    assert best in {chosen for _, chosen, _ in texts} and best not in {rejected for _, _, rejected in texts}
