"""The glue between packed rows and the pure losses (training/losses.py), and candidate scoring and
pairing (training/episodes.py, stages/critic.py score_actions), against values computed by hand in
float64 from the sequences' own token ids (never from the packed rows).

The "model" here is a fixed per-token log-prob table: the log-prob a row gives a position is the
table's value of the label there. Hand values sum the table over each sequence's action tokens."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from sweet_megatron.config import load_config
from sweet_megatron.data.chat import Message
from sweet_megatron.data.packing import Sequence, collate, pack_groups
from sweet_megatron.env.bytetok import ByteTokenizer
from sweet_megatron.env.colbench_backend.tasks import load_tasks
from sweet_megatron.training import episodes as ep
from sweet_megatron.training.losses import actor_dpo_loss_fn, critic_loss_fn, trajectory_dpo_loss_fn

V = 300
POLICY = torch.linspace(-6.0, -0.5, V, dtype=torch.float64).roll(37)  # log-prob of each token id
REF = torch.linspace(-5.0, -1.0, V, dtype=torch.float64).flip(0)


def _logp(rows, table: torch.Tensor) -> torch.Tensor:
    """[B, S] log-prob of each row's labels under a per-token table (0 where there is no label)."""
    mb = collate(rows)
    return torch.where(mb["segment_ids"] >= 0, table[mb["labels"]], torch.zeros((), dtype=torch.float64))


def _mb(rows, ref_table=REF) -> dict:
    for r in rows:
        r.ref_logp = _logp([r], ref_table)[0]
    return {**collate(rows), "rows": rows}


def _action_tokens(seq: Sequence, turn: int | None = None) -> list[int]:
    return [t for t, k in zip(seq.ids, seq.turn_of_token, strict=True) if k >= 0 and (turn is None or k == turn)]


def _pair_groups(rng: torch.Generator, n: int, turns: int = 1) -> list[list[Sequence]]:
    groups = []
    for p in range(n):
        group = []
        for chosen in (True, False):
            ids, owner = [1, 2], [-1, -1]
            for k in range(turns):
                prompt = torch.randint(3, V, (3,), generator=rng).tolist()
                act = torch.randint(3, V, (int(torch.randint(2, 6, (1,), generator=rng)),), generator=rng).tolist()
                ids += prompt + act
                owner += [-1] * 3 + [k] * len(act)
            group.append(Sequence(ids, owner, extra={"pair": p, "chosen": chosen}))
        groups.append(group)
    return groups


def test_actor_dpo_glue_matches_hand_value_and_prefers_chosen():
    rng = torch.Generator().manual_seed(0)
    groups = _pair_groups(rng, 3)
    rows, seqs = pack_groups(groups, 64, pad_id=0)
    beta, nll_coef = 0.3, 0.2
    mb = _mb(rows)
    logp = _logp(rows, POLICY).requires_grad_(True)
    loss_sum, count, metrics = actor_dpo_loss_fn(seqs, beta, nll_coef)(mb, logp)

    def total(seq, table):
        return float(sum(table[t] for t in _action_tokens(seq)))

    margins, nll, n_tok = [], 0.0, 0
    for chosen, rejected in groups:
        margins.append(beta * ((total(chosen, POLICY) - total(chosen, REF))
                               - (total(rejected, POLICY) - total(rejected, REF))))
        nll -= total(chosen, POLICY)
        n_tok += len(_action_tokens(chosen))
    want = sum(math.log1p(math.exp(-m)) for m in margins) / len(margins) + nll_coef * nll / n_tok
    assert int(count) == 3
    assert float(loss_sum) / 3 == pytest.approx(want, rel=1e-9)
    assert float(metrics["accuracy"]) / 3 == pytest.approx(sum(m > 0 for m in margins) / 3)
    # direction: more log-prob on a chosen action lowers the loss, on a rejected one raises it
    loss_sum.backward()
    mask = collate(rows)["segment_ids"] >= 0
    seg_seq = {}
    for r, row in enumerate(rows):
        for j, (s, _) in enumerate(row.segments):
            seg_seq[(r, j)] = s
    for r, row in enumerate(rows):
        for pos in mask[r].nonzero().squeeze(1).tolist():
            s = seg_seq[(r, int(row.segment_ids[pos]))]
            g = float(logp.grad[r, pos])
            assert (g < 0) if seqs[s].extra["chosen"] else (g > 0), (s, g)


def _critic_hand(groups, beta, reduction):
    """Per pair: beta * score(chosen) - beta * score(rejected); score as algorithms/critic.py documents:
    'per_turn_sum' sums over turns the mean of (critic - ref) over the turn's tokens; 'pooled_mean'
    is one mean over all agent tokens."""
    def score(seq):
        turns = sorted({k for k in seq.turn_of_token if k >= 0})
        if reduction == "pooled_mean":
            toks = _action_tokens(seq)
            return beta * float(sum(POLICY[t] - REF[t] for t in toks)) / len(toks)
        return beta * sum(float(sum(POLICY[t] - REF[t] for t in _action_tokens(seq, k))) / len(_action_tokens(seq, k))
                          for k in turns)
    return [score(c) - score(r) for c, r in groups]


@pytest.mark.parametrize("reduction", ["per_turn_sum", "pooled_mean"])
def test_critic_bt_glue_matches_hand_value_and_prefers_chosen(reduction):
    rng = torch.Generator().manual_seed(1)
    groups = _pair_groups(rng, 3, turns=2)
    rows, seqs = pack_groups(groups, 48, pad_id=0)  # several rows: pairs may straddle microbatch order
    beta = 0.7
    mb = _mb(rows)
    logp = _logp(rows, POLICY).requires_grad_(True)
    loss_sum, count, metrics = critic_loss_fn(seqs, beta, reduction)(mb, logp)
    margins = _critic_hand(groups, beta, reduction)
    want = sum(math.log1p(math.exp(-m)) for m in margins) / len(margins)
    assert int(count) == 3
    assert float(loss_sum) / 3 == pytest.approx(want, rel=1e-9)
    loss_sum.backward()
    mask = collate(rows)["segment_ids"] >= 0
    for r, row in enumerate(rows):
        for pos in mask[r].nonzero().squeeze(1).tolist():
            s = row.segments[int(row.segment_ids[pos])][0]
            g = float(logp.grad[r, pos])
            assert (g < 0) if seqs[s].extra["chosen"] else (g > 0)


def test_trajectory_dpo_glue_prefers_chosen():
    rng = torch.Generator().manual_seed(2)
    groups = _pair_groups(rng, 2, turns=2)
    rows, seqs = pack_groups(groups, 64, pad_id=0)
    mb = _mb(rows)
    logp = _logp(rows, POLICY).requires_grad_(True)
    loss_sum, count, _ = trajectory_dpo_loss_fn(seqs, 0.5, 0.0)(mb, logp)
    margins = [0.5 * (float(sum(POLICY[t] - REF[t] for t in _action_tokens(c)))
                      - float(sum(POLICY[t] - REF[t] for t in _action_tokens(r)))) for c, r in groups]
    assert float(loss_sum) / int(count) == pytest.approx(sum(math.log1p(math.exp(-m)) for m in margins) / 2, rel=1e-9)


# ------------------------------------------------------------------ pairing and candidate scoring
SAMPLE = "builtin:colbench/backend_test_0-199.jsonl"


def test_trajectory_pairs_put_the_higher_reward_first_and_the_critic_sees_the_reference():
    from sweet_megatron.env.episode import Episode, Turn

    tok = ByteTokenizer()
    task = load_tasks(SAMPLE, limit=1)[0]
    eps = []
    for k, reward in enumerate((0.25, 1.0, 0.5)):
        e = Episode(k, task.task_id, f"system {task.problem_description}", reward=reward, done=True)
        e.turns.append(Turn([], [], [], f"I WANT TO ANSWER: attempt {k}"))
        eps.append(e)
    groups, _ = ep.trajectory_pair_groups(tok, eps, {task.task_id: task}, with_reference=True)
    assert len(groups) == 2
    for chosen, rejected in groups:
        assert chosen.extra["chosen"] and not rejected.extra["chosen"]
        assert "attempt 1" in tok.decode(chosen.ids)  # the best (reward 1.0) is chosen
        assert "attempt 1" not in tok.decode(rejected.ids)
        for seq in (chosen, rejected):  # the critic's view holds the reference solution
            assert task.hidden_information in tok.decode(seq.ids)
    plain, _ = ep.trajectory_pair_groups(tok, eps, {task.task_id: task}, with_reference=False)
    assert all(task.hidden_information not in tok.decode(s.ids) for g in plain for s in g)


def test_turn_pairs_choose_the_higher_scored_candidate():
    tok = ByteTokenizer()
    task = load_tasks(SAMPLE, limit=1)[0]
    states = [ep.TurnState(task, [Message("system", "s0")]), ep.TurnState(task, [Message("system", "s1")])]
    cands = [["a0", "a1", "a2", "a3"], ["b0", "b1", "b2", "b3"]]
    scores = torch.tensor([[0.1, 0.9, -0.5, 0.3], [2.0, -1.0, 0.0, 1.0]])
    value = {c: float(scores[g, m]) for g, row in enumerate(cands) for m, c in enumerate(row)}
    groups, _, texts = ep.turn_pair_groups(tok, states, cands, scores, pairs_per_turn=2, seed=0)
    assert len(groups) == 4
    for (_, chosen, rejected), (cs, rs) in zip(texts, groups, strict=True):
        assert value[chosen] > value[rejected]
        assert cs.extra["chosen"] and not rs.extra["chosen"]
        assert tok.decode(cs.ids).endswith(chosen + tok.decode([tok.eot_id]))
        assert tok.decode(rs.ids).endswith(rejected + tok.decode([tok.eot_id]))
        # the actor trains without the reference solution
        assert task.hidden_information not in tok.decode(cs.ids)


class _TableModel:
    """A stand-in runner whose token_logprobs is a fixed per-token table (a real function of the
    rows' labels, so the score can be recomputed from the candidate text alone)."""

    def __init__(self, table: torch.Tensor):
        self.table = table

    def token_logprobs(self, rows):
        return [_logp([r], self.table)[0] for r in rows]


def test_candidates_are_scored_critic_minus_reference_with_the_reference_solution():
    from sweet_megatron.training.stages.context import StageContext
    from sweet_megatron.training.stages.critic import score_actions

    tok = ByteTokenizer()
    task = load_tasks(SAMPLE, limit=1)[0]
    cfg = load_config(["sweet.critic_beta=0.5"])
    trainer = object.__new__(StageContext)  # only the scoring glue: no model is built
    trainer.cfg, trainer.tok = cfg, tok
    trainer.model_cfg = SimpleNamespace(seq_length=4096)
    trainer.actor = SimpleNamespace(shares_prefixes=True)
    states = [ep.TurnState(task, [Message("system", "describe the function")])]
    actions = [(0, "What is the input?"), (0, "I WANT TO ANSWER: def f(): return 1")]
    table_c = torch.linspace(-4.0, -0.1, tok.vocab_size, dtype=torch.float64)
    table_r = table_c.flip(0)
    got = score_actions(trainer, _TableModel(table_c), _TableModel(table_r), states, actions, with_reference=True)

    def hand(text):
        ids = tok.encode(text) + [tok.eot_id]
        return 0.5 * float(sum(table_c[t] - table_r[t] for t in ids)) / len(ids)

    assert got.tolist() == pytest.approx([hand(a) for _, a in actions], rel=1e-6)
    # the critic saw the reference solution in each candidate's prompt
    seqs = [ep.candidate_sequence(tok, states[g], c, True) for g, c in actions]
    assert all(task.hidden_information in tok.decode(s.ids) for s in seqs)
