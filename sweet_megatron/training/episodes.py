"""Glue between the environment, the rollout engine and packed training data for the stages.

Everything here is data plumbing (no model math): task splits, the tokenizer, the engine, rollouts
sharded over ranks and gathered, and the conversion of episodes, turn states and candidate actions
into packed `Sequence`s (the critic's view prepends the reference solution to the system prompt).

What depends on the kind of task is asked of the environment (`environment(cfg.task)`, an
env.base.Environment): its splits, protocol, simulated person and evaluator, and its optional
demonstrations, base corpus and oracle; a stage that needs one it lacks is a ConfigError naming it.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist

from sweet_megatron.config import ConfigError, RolloutConfig, SimulatorConfig, TaskConfig, TokenizerConfig
from sweet_megatron.data.chat import Message, action_ids, render_dialogue, render_prompt
from sweet_megatron.data.packing import PackedRow, Sequence
from sweet_megatron.data.tokenizer import (
    SentencePieceTokenizer,
    Tokenizer,
    load_tokenizer,
    train_sentencepiece,
)
from sweet_megatron.env.base import AnswerProtocol, Environment, MissingCapability, TaskConfigError
from sweet_megatron.parallel import is_rank0
from sweet_megatron.rollout.base import SamplingParams

log = logging.getLogger("sweet_megatron")

REFERENCE_HEADER = "\n\nReference solution (hidden from the agent):\n"


# ---------------------------------------------------------------------------------------- set-up
def environment(cfg: TaskConfig) -> Environment:
    """The environment task.source names (env/registry.py)."""
    from sweet_megatron.env.registry import UnknownEnvironment, get

    try:
        return get(cfg.source)
    except UnknownEnvironment as exc:
        raise ConfigError(str(exc)) from None


def require(env: Environment, capability: str, fix: str = ""):
    """The environment's `capability` (demonstrations, base_corpus, oracle), or a ConfigError naming it."""
    try:
        return env.require(capability, fix)
    except MissingCapability as exc:
        raise ConfigError(str(exc)) from None


def require_training(env: Environment, stage: str) -> None:
    """A ConfigError when the environment cannot be trained on (stage `stage` was asked for)."""
    try:
        env.require_training(stage)
    except MissingCapability as exc:
        raise ConfigError(str(exc)) from None


def check_ready(env: Environment, stage: str) -> None:
    """A ConfigError when the environment's evaluator cannot run here (stages that score answers)."""
    if stage in ("pretrain", "sft"):
        return
    try:
        env.check_ready()
    except TaskConfigError as exc:
        raise ConfigError(str(exc)) from None


def has_oracle(env: Environment, tasks: list, every: bool = False) -> bool:
    """Whether the environment's oracle values actions on any (every=True: every) one of `tasks`."""
    if env.oracle is None:
        return False
    covered = [env.oracle.covers(t) for t in tasks]
    return all(covered) if every else any(covered)


def load_task_splits(cfg: TaskConfig, val: list | None = None) -> tuple[list, list]:
    """(training tasks, held-out tasks) from the environment task.source names. With
    task.train_file (colbench_backend), the validation tasks carved from it (task.val_size) are
    appended to `val` when given; they are the held-out tasks when there is no task.eval_file. A
    missing file or a file without a usable row raises ConfigError naming the key."""
    try:
        return environment(cfg).task_splits(cfg, val)
    except TaskConfigError as exc:
        raise ConfigError(str(exc)) from None


def _corpus(tasks: list, env: Environment) -> list[str]:
    """Text the tiny tokenizer is trained on: task texts plus the environment's scripted dialogues
    (when it has demonstrations), played with a byte-level tokenizer since the real one does not
    exist yet."""
    texts = ["I WANT TO ANSWER:", "user", "assistant", "system", REFERENCE_HEADER]
    for t in tasks:
        texts += [t.problem_description, t.ground_truth, t.hidden_information]
    if env.demonstrations is not None:
        texts += env.demonstrations.tokenizer_texts(tasks)
    return texts


def tokenizer_config(cfg: TokenizerConfig, init_from: Path | None) -> TokenizerConfig:
    """The tokenizer to use: the configured one, or, when none is configured and the run starts from
    a checkpoint that carries its tokenizer, that one (a model only makes sense with its own)."""
    if cfg.path or init_from is None:
        return cfg
    from sweet_megatron.checkpoint.model_io import read_meta

    tok = read_meta(init_from).get("tokenizer")
    if not tok:
        return cfg
    return replace(cfg, kind=tok["kind"], path=str(init_from / tok["path"]))


def build_tokenizer(cfg: TokenizerConfig, run_dir: Path, train_tasks: list, env: Environment) -> Tokenizer:
    """The configured tokenizer; with no path, a sentencepiece model trained on rank 0 into run_dir
    (on the texts of `_corpus(train_tasks, env)`)."""
    if cfg.path:
        return load_tokenizer(cfg.kind, cfg.path)
    path = run_dir / "tokenizer.model"
    if is_rank0() and not path.exists():
        train_sentencepiece(_corpus(train_tasks, env), path, vocab_size=cfg.vocab_size,
                            number_pieces=cfg.number_pieces, markup_pieces=cfg.markup_pieces)
    if dist.is_initialized():
        dist.barrier()
    return SentencePieceTokenizer(path)


def build_simulator(cfg: SimulatorConfig, env: Environment):
    """The environment's own simulated person for simulator=rule; for http/engine the environment's
    own LLM-backed one when it has one, else the shared one."""
    if cfg.kind == "rule":
        return env.rule_simulator()
    own = env.llm_simulator(cfg)
    if own is not None:
        return own
    from sweet_megatron.env.simulators import build_llm_simulator

    return build_llm_simulator(cfg)


# ---------------------------------------------------------------------------------------- rollouts
def _shard_gather(items: list, fn, group_size: int = 1) -> list:
    """Run fn on this rank's share of items (round robin over engine groups of `group_size`
    consecutive ranks, which all get the same share: rollout/groups.py); every rank gets all results."""
    from sweet_megatron.rollout.groups import group_share, merge_group_shares

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return fn(items)
    world, rank = dist.get_world_size(), dist.get_rank()
    share = group_share(items, rank, world, group_size)
    mine = fn(share) if share else []
    parts: list[list] = [None] * world  # type: ignore[list-item]
    dist.all_gather_object(parts, mine)
    return merge_group_shares(parts, len(items), group_size)


def sampling(cfg: RolloutConfig, tok: Tokenizer, greedy: bool, n: int = 1, seed: int | None = None) -> SamplingParams:
    return SamplingParams(temperature=0.0 if greedy else cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                          stop_token_ids=(tok.eot_id,), n=n, seed=seed)


def rollout(engine, tok: Tokenizer, tasks: list, simulator, cfg: RolloutConfig, greedy: bool, seed: int,
            env: Environment) -> list:
    """One episode per task (tasks may repeat), batched in lockstep on each rank, gathered to all;
    the environment's protocol and evaluator."""
    from sweet_megatron.env.agents import EngineAgent
    from sweet_megatron.env.episode import run_episodes

    def run(shard: list) -> list:
        agent = EngineAgent(engine, tok, sampling(cfg, tok, greedy, seed=seed))
        return run_episodes(agent, shard, simulator, evaluator=env.evaluator(), max_turns=cfg.max_turns,
                            tokenizer=tok, protocol=env.protocol)

    return _shard_gather(tasks, run, engine.group_size)


def summarize(episodes: list) -> dict:
    n = max(len(episodes), 1)
    return {
        "success_rate": sum(e.success for e in episodes) / n,
        "mean_reward": sum(e.reward for e in episodes) / n,
        "mean_turns": sum(len(e.turns) for e in episodes) / n,
        "episodes": len(episodes),
    }


def sample_tasks(tasks: list, num_episodes: int, per_task: int, seed: int) -> list:
    """num_episodes / per_task distinct tasks, each repeated per_task times (pairs need siblings)."""
    rng = random.Random(seed)
    chosen = rng.sample(tasks, min(len(tasks), max(num_episodes // per_task, 1)))
    return [t for t in chosen for _ in range(per_task)]


def scripted_demos(env: Environment, cfg: TaskConfig, tasks: list, simulator, tok: Tokenizer, max_turns: int) -> list:
    """The environment's scripted demonstrations (task.num_demos of them) for the SFT warm start."""
    demos = require(env, "demonstrations", "set task.num_demos=0 and give sweet.offline_episodes (SFT on its "
                    "successful episodes), or train.steps=0 (no warm start)")
    return demos.episodes(cfg, tasks, simulator, tok, max_turns)


def base_sequence(tok: Tokenizer, text: str, code: str | None = None) -> list[int]:
    """A base-model document as ids: BOS, the specification, a blank line, the code, end-of-turn.
    Without `code`, the prompt a base model writes the code from (a prefix of the full ids)."""
    ids = [tok.bos_id, *tok.encode(text + "\n\n")]
    return ids if code is None else [*ids, *tok.encode(code), tok.eot_id]


def base_documents(env: Environment, num_documents: int, seed: int, split: str = "train") -> list[tuple]:
    """The environment's base-model documents (task, specification, code) of `split`."""
    corpus = require(env, "base_corpus", "stage=pretrain trains on the synthetic family's documents: use task=synthetic")
    return corpus.documents(num_documents, seed, split=split)


def base_corpus(env: Environment, tok: Tokenizer, num_documents: int, seed: int) -> list[Sequence]:
    """The base model's training documents (train-split functions), language-modelled on every token."""
    out = []
    for _, text, code in base_documents(env, num_documents, seed, split="train"):
        ids = base_sequence(tok, text, code)
        out.append(Sequence(ids, [-1] * len(ids), context_weight=1.0))
    return out


# ---------------------------------------------------------------------------------------- sequences
def critic_view(messages: list[Message], task) -> list[Message]:
    """The critic's input: the reference solution appended to the system prompt."""
    first = messages[0]
    return [Message(first.role, first.content + REFERENCE_HEADER + task.hidden_information), *messages[1:]]


def sequence(tok: Tokenizer, messages: list[Message], context_weight: float = 0.0, **extra) -> Sequence:
    ids, turns = render_dialogue(tok, messages)
    return Sequence(ids, turns, context_weight=context_weight, extra=extra)


def trajectory_pair_groups(tok: Tokenizer, episodes: list, tasks: dict, with_reference: bool,
                           strategy: str = "best_vs_worse", min_best_reward: float | None = None
                           ) -> tuple[list[list[Sequence]], list]:
    """Same-task trajectory pairs (`strategy` of algorithms.pairs.trajectory_pairs: best vs each
    strictly worse, or every strictly ordered pair; only tasks whose best reward reaches
    `min_best_reward`), as packing groups [chosen, rejected].

    tasks maps task_id -> Task (the critic's view needs the task's hidden information).
    """
    from sweet_megatron.algorithms.pairs import trajectory_pairs

    ids: dict[str, int] = {}
    task_ids = torch.tensor([ids.setdefault(e.task_id, len(ids)) for e in episodes])
    rewards = torch.tensor([float(e.reward) for e in episodes])
    pairs = trajectory_pairs(task_ids, rewards, strategy=strategy, min_best_reward=min_best_reward)
    groups = []
    for p, (c, r) in enumerate(zip(pairs.chosen_P.tolist(), pairs.rejected_P.tolist(), strict=True)):
        group = []
        for idx, chosen in ((c, True), (r, False)):
            e = episodes[idx]
            msgs = critic_view(e.messages(), tasks[e.task_id]) if with_reference else e.messages()
            group.append(sequence(tok, msgs, pair=p, chosen=chosen))
        groups.append(group)
    return groups, [s for g in groups for s in g]


@dataclass
class TurnState:
    """What the agent saw before one of its turns."""

    task: object
    messages: list[Message]


def sample_states(episodes: list, tasks: dict, num: int, seed: int) -> list[TurnState]:
    """Up to `num` turn states drawn from the episodes (the dialogue before each agent turn)."""
    # messages() is [system, a0, u0, a1, u1, ...]: agent turn k is message 1 + 2k
    states = [TurnState(tasks[e.task_id], e.messages()[: 1 + 2 * k]) for e in episodes for k in range(len(e.turns))]
    rng = random.Random(seed)
    return rng.sample(states, min(num, len(states)))


def candidates(engine, tok: Tokenizer, states: list[TurnState], n: int, cfg: RolloutConfig, seed: int) -> list[list[str]]:
    """n sampled candidate actions (text) per state, from the actor's engine; sharded over ranks."""
    def run(shard: list[TurnState]) -> list[list[str]]:
        prompts = [render_prompt(tok, s.messages) for s in shard]
        gens = engine.generate(prompts, sampling(cfg, tok, greedy=False, n=n, seed=seed))
        return [[tok.decode(g.token_ids) for g in row] for row in gens]

    return _shard_gather(states, run, engine.group_size)


def candidate_sequence(tok: Tokenizer, state: TurnState, text: str, with_reference: bool, **extra) -> Sequence:
    """The state's history plus one candidate action, as a sequence whose only segment is the action."""
    msgs = critic_view(state.messages, state.task) if with_reference else state.messages
    prompt = render_prompt(tok, msgs)
    act = action_ids(tok, text)
    return Sequence(prompt + act, [-1] * len(prompt) + [0] * len(act), extra=extra)


def distinct_actions(cands: list[list[str]]) -> tuple[list[tuple[int, str]], torch.Tensor]:
    """The distinct (state index, action text) pairs of G states' M candidates, in first-seen order,
    and slot_GM [G, M] long: the index of each candidate's pair in that list.

    A critic scores each distinct action once and gathers scores_GM = scores[slot_GM]: scored
    separately, two copies of one action can differ in the last float bit (their rows pack
    differently), and the strict top-vs-bottom pairing would then train DPO on an action against
    itself, a pair that carries no preference and only dilutes the loss."""
    index: dict[tuple[int, str], int] = {}
    slot_GM = [[index.setdefault((g, c), len(index)) for c in row] for g, row in enumerate(cands)]
    return list(index), torch.tensor(slot_GM, dtype=torch.long)


def turn_pair_groups(tok: Tokenizer, states: list[TurnState], cands: list[list[str]], scores_GM: torch.Tensor,
                     pairs_per_turn: int, seed: int, min_margin: float = 0.0
                     ) -> tuple[list[list[Sequence]], list[Sequence], list[tuple]]:
    """Top-half vs bottom-half candidate pairs per state, as packing groups for actor DPO.

    Returns (groups, their sequences flat, the pairs as (state index, chosen text, rejected text))."""
    from sweet_megatron.algorithms.pairs import turn_pairs

    M = scores_GM.shape[1]
    pairs = turn_pairs(scores_GM, num_pairs=pairs_per_turn, generator=torch.Generator().manual_seed(seed),
                       min_margin=min_margin)
    groups, texts = [], []
    for p, (c, r) in enumerate(zip(pairs.chosen_P.tolist(), pairs.rejected_P.tolist(), strict=True)):
        g = c // M
        texts.append((g, cands[g][c % M], cands[r // M][r % M]))
        groups.append([candidate_sequence(tok, states[g], texts[-1][1], False, pair=p, chosen=True),
                       candidate_sequence(tok, states[g], texts[-1][2], False, pair=p, chosen=False)])
    return groups, [s for grp in groups for s in grp], texts


def oracle_values(env: Environment, states: list[TurnState], actions: list[list[str]]) -> list[list[float]]:
    """The environment oracle's value of each action of each state (rows may differ in length)."""
    oracle = require(env, "oracle")
    return [[oracle.action_value(s.task, s.messages, a) for a in row] for s, row in zip(states, actions, strict=True)]


def oracle_scores(env: Environment, states: list[TurnState], cands: list[list[str]]) -> torch.Tensor:
    """The oracle's value [G, M] of each of M candidate actions at each of G turn states
    (sweet.actor_scorer=oracle: a perfect per-turn critic, a diagnostic). Raises ValueError when the
    oracle does not cover a state's task, as nothing values its actions."""
    for s in states:
        if not has_oracle(env, [s.task]):
            raise ValueError(f"sweet.actor_scorer=oracle: no oracle values the actions of task {s.task.task_id!r} "
                             f"(task.source={env.name}); use sweet.actor_scorer=critic (or task=synthetic)")
    return torch.tensor(oracle_values(env, states, cands), dtype=torch.float32)


def pair_oracle_agreement(env: Environment, states: list[TurnState], pairs: list[tuple]) -> dict[str, float] | None:
    """How the actor's training pairs agree with the oracle (None unless it covers every task): the
    fractions of pairs whose chosen action the oracle values higher ('agree'), lower ('disagree')
    or the same ('tie'). Read next to the held-out credit check: this is the signal the actor
    actually learns from."""
    if not pairs or not has_oracle(env, [states[g].task for g, _, _ in pairs], every=True):
        return None
    signs = []
    for g, chosen, rejected in pairs:
        before, task = states[g].messages, states[g].task
        diff = env.oracle.action_value(task, before, chosen) - env.oracle.action_value(task, before, rejected)
        signs.append((diff > 0) - (diff < 0))
    n = len(signs)
    return {"pairs_oracle_agree": signs.count(1) / n, "pairs_oracle_disagree": signs.count(-1) / n,
            "pairs_oracle_tie": signs.count(0) / n}


def oracle_candidates(env: Environment, tasks: list, simulator, tok: Tokenizer, max_turns: int, max_states: int = 48,
                      seed: int = 0):
    """Held-out turn states with the oracle's fixed menu of candidate actions (Oracle.menu; the
    synthetic family's: the dialogue before each turn of its scripted ask-everything agent, every
    question, two distractors, the answer from what is known and a miscopied one), `max_states` of
    them drawn without replacement over all tasks' turns with a seeded shuffle, so they spread over
    many tasks instead of all the turns of the first few. Returns (states, menus, oracle values)."""
    menu = require(env, "oracle").menu(tasks, simulator, tok, max_turns)
    states = [TurnState(task, state) for task, state, _ in menu]
    cands = [row for _, _, row in menu]
    keep = sorted(random.Random(f"credit/{seed}").sample(range(len(states)), min(max_states, len(states))))
    states, cands = [states[i] for i in keep], [cands[i] for i in keep]
    return states, cands, oracle_values(env, states, cands)


def policy_candidates(env: Environment, engine, tok: Tokenizer, tasks: list, simulator, cfg: RolloutConfig,
                      num_states: int, n: int, seed: int) -> tuple[list[TurnState], list[list[str]], list[list[float]]]:
    """Held-out turn states of the actor's own, with the actions it would take there, valued by the oracle.

    The credit check's second population, next to the fixed menu of `oracle_candidates`: one
    sampled episode of the actor on each of the first `num_states` held-out tasks the oracle
    covers, `num_states` of their turn states drawn with a seeded shuffle, n actions sampled from the
    actor at each (with another seed than the episodes, so the first is not the episode's own
    action), and each distinct action kept once, in first-sampled order. These are the kind of
    actions the actor stage ranks, on tasks neither the actor nor the critic trained on. Returns
    (states, actions per state, oracle value of each action).
    """
    covered = [t for t in tasks if has_oracle(env, [t])][:num_states]
    episodes = rollout(engine, tok, covered, simulator, cfg, greedy=False, seed=seed, env=env)
    states = sample_states(episodes, {t.task_id: t for t in covered}, num_states, seed)
    actions = [list(dict.fromkeys(row)) for row in candidates(engine, tok, states, n, cfg, seed + 1)]
    return states, actions, oracle_values(env, states, actions)


def credit_accuracy(env: Environment, scores: torch.Tensor, states: list, actions: list[tuple[int, str]],
                    oracle: list[list[float]]) -> dict:
    """Turn-ranking accuracy of scores [A] (one per (state index, action) in `actions`, grouped by
    state in order) against the oracle values, over all pairs and by kind of pair: between two
    actions that are not answers ("questions": mostly questions, also whatever else a sampled action
    says), among them the questions whose value only the code decides (where the reference can help
    with questions at all), between two answers, and a question against an answer ("mixed")."""
    from sweet_megatron.algorithms.ranking import pairwise_ranking_accuracy

    judge = require(env, "oracle")
    values = torch.tensor([v for row in oracle for v in row], dtype=torch.float64)
    groups = torch.tensor([g for g, _ in actions])
    is_answer = torch.tensor([env.protocol.extract_answer(c) is not None for _, c in actions], dtype=torch.bool)
    hidden_code = torch.tensor([judge.depends_on_hidden_code(states[g].task, states[g].messages, c)
                                for g, c in actions], dtype=torch.bool)
    acc, n = pairwise_ranking_accuracy(scores, values, groups)
    result = {"turn_ranking_accuracy": float(acc), "pairs": n}
    for kind, keep in {"questions": ~is_answer, "answers": is_answer, "code_questions": hidden_code}.items():
        acc_k, n_k = pairwise_ranking_accuracy(scores[keep], values[keep], groups[keep])
        result |= {f"{kind}_accuracy": float(acc_k), f"{kind}_pairs": n_k}
    # The rest of the pairs: a question against an answer at the same state (is the agent ready to answer).
    n_mixed = n - result["questions_pairs"] - result["answers_pairs"]
    right = (float(acc) * n - sum(result[f"{k}_accuracy"] * result[f"{k}_pairs"]
                                  for k in ("questions", "answers") if result[f"{k}_pairs"]))
    result |= {"mixed_accuracy": right / n_mixed if n_mixed else float("nan"), "mixed_pairs": n_mixed}
    return result


# ---------------------------------------------------------------------------------------- batches
def step_rows(rows: list[PackedRow], step: int, per_step: int, seed: int) -> list[PackedRow]:
    """The rows of optimizer step `step`: epochs of a seeded shuffle, so a resumed run replays exactly."""
    per_epoch = max(len(rows) // per_step, 1)
    epoch, pos = divmod(step, per_epoch)
    order = list(range(len(rows)))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    picked = [order[(pos * per_step + k) % len(rows)] for k in range(per_step)]
    return [rows[i] for i in picked]


def text_probe(tok: Tokenizer, tasks: list):
    """A fixed probe batch from real task text: description prompts with the reference as continuation."""
    from sweet_megatron.rollout.probe import Probe

    prompts, conts = [], []
    for t in tasks[:4]:
        prompts.append(render_prompt(tok, [Message("system", t.problem_description)]))
        conts.append(action_ids(tok, "I WANT TO ANSWER:\n" + t.ground_truth)[:48])
    return Probe(prompts, conts)


# ---------------------------------------------------------------------------------------- episode files
LAYOUTS = ("project", "reference")


def to_reference_record(e, task, layout: str = "project") -> dict:
    """One episode as a JSONL record: {"task", "dialogue_history", "answer", "reward"}.

    layout 'reference' is the reference implementation's exactly: dialogue_history opens with the
    user's problem statement (the task's problem description), then alternates assistant/user; the
    task record has no task_id. 'project' (this project's own) starts dialogue_history with the
    agent's first turn and keeps the task's id."""
    opening = 1 if e.problem_message is None else 2  # the system message, and the problem if it is a message
    history = [{"role": m.role, "content": m.content} for m in e.messages()[opening:]]
    record = task.to_record()
    if layout == "reference":
        history.insert(0, {"role": "user", "content": task.problem_description})
        record.pop("task_id", None)
    return {"task": record, "dialogue_history": history, "answer": e.answer, "reward": e.reward}


def save_episodes(path: Path, episodes: list, tasks: dict, layout: str = "project") -> None:
    """Episodes as JSONL (to_reference_record; `layout` 'project' or 'reference'), written
    atomically by rank 0. Both layouts load back with load_episodes."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: use one of {', '.join(LAYOUTS)}")
    if not is_rank0():
        return
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for e in episodes:
            f.write(json.dumps(to_reference_record(e, tasks[e.task_id], layout)) + "\n")
    tmp.replace(path)


class EpisodeFormatError(ValueError):
    """A malformed line in an episodes file; the message names the file and line."""


def content_task_id(task_record: dict) -> str:
    """A task id from the task's content (problem description and reference code): the reference
    layout carries no id, and the k rollouts of one task must share one to pair up."""
    import hashlib

    text = json.dumps([task_record.get("problem_description"), task_record.get("ground_truth")])
    return "task-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def load_episodes(path: str | Path, protocol: AnswerProtocol, scorer=None,
                  max_turns: int | None = None) -> tuple[list, dict]:
    """Episodes from a JSONL file in either layout of `to_reference_record`: (episodes, tasks by id).

    Each line: {"task": {ColBench task record}, "dialogue_history": [{"role": "user"|"assistant",
    "content": str, ...}, ...], "answer": str|null, "reward": float (optional)}. dialogue_history
    either opens with the user's problem statement (the reference layout; that turn is the task's
    description, not a reply, and is dropped) or with the agent's first turn (this project's);
    after that it alternates assistant/user. Other keys of a turn ("input", "output") are ignored.
    A task without "task_id" is identified by its content (content_task_id), so the rollouts of one
    task pair however the file is ordered. Episodes without "reward" are scored by `scorer`
    (default: the sandboxed backend evaluator, env.evaluator.score_answers) on their "answer", in
    one batch; their task records then need "test_cases".
    Each episode opens as a live one of the run's environment would (`protocol.opening`, the
    environment's, with `max_turns`, default the episode loop's): ColBench's instructions and the
    problem as the person's first message for the ColBench backend, the demo's system message for
    the synthetic family.
    """
    from sweet_megatron.env.colbench_backend.tasks import Task
    from sweet_megatron.env.episode import MAX_TURNS, Episode, Turn
    from sweet_megatron.env.jsonl import iter_jsonl

    episodes, tasks, unscored = [], {}, []
    for where, _, rec in iter_jsonl(path, EpisodeFormatError):
        try:
            t = rec["task"]
            task = Task(problem_description=t["problem_description"], ground_truth=t.get("ground_truth", ""),
                        hidden_information=t.get("hidden_information", t.get("ground_truth", "")),
                        test_cases=dict(t.get("test_cases") or {}), task_id=t.get("task_id") or content_task_id(t),
                        synthetic=t.get("synthetic"))
            history = list(rec["dialogue_history"])
            reward = float(rec["reward"]) if rec.get("reward") is not None else None
        except KeyError as exc:
            raise EpisodeFormatError(f"{where}: missing field {exc.args[0]!r} (need task, dialogue_history; "
                                     "reward is optional)") from exc
        except (TypeError, ValueError, AttributeError) as exc:
            raise EpisodeFormatError(f"{where}: bad value ({exc})") from exc
        if history and isinstance(history[0], dict) and history[0].get("role") == "user":
            history = history[1:]  # the reference layout: the problem statement opens the dialogue
        answer = rec.get("answer")
        system, problem = protocol.opening(task, max_turns or MAX_TURNS)
        e = Episode(len(episodes), task.task_id, system, problem_message=problem,
                    answer=answer if isinstance(answer, str) else None, reward=reward or 0.0,
                    success=reward is not None and reward >= 1.0, done=True)
        for k, msg in enumerate(history):
            role, content = (msg.get("role"), msg.get("content")) if isinstance(msg, dict) else (None, None)
            expected = "assistant" if k % 2 == 0 else "user"
            if role != expected or not isinstance(content, str):
                raise EpisodeFormatError(f"{where}: dialogue_history turn {k + 1} after the problem statement should "
                                         f"be a {expected} turn with text content (got role {role!r})")
            if role == "assistant":
                e.turns.append(Turn([], [], [], content))
            else:
                e.turns[-1].simulator_reply = content
        if not e.turns:
            raise EpisodeFormatError(f"{where}: dialogue_history has no agent turn")
        if reward is None:
            if not task.test_cases:
                raise EpisodeFormatError(f"{where}: no 'reward' and the task has no 'test_cases' to score the "
                                         "answer with; add either")
            unscored.append(e)
        episodes.append(e)
        tasks.setdefault(task.task_id, task)
    if unscored:
        if scorer is None:
            from sweet_megatron.env.colbench_backend.evaluator import score_answers as scorer
        log.info("%s: scoring %d episodes without a reward with the evaluator", path, len(unscored))
        for e, score in zip(unscored, scorer([tasks[e.task_id] for e in unscored], [e.answer for e in unscored]),
                            strict=True):
            e.reward, e.success, e.score = float(score.reward), bool(score.success), score
    return episodes, tasks
