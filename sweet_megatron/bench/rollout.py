"""`sweet-bench rollout`: one RL iteration's rollout side, phase by phase, as verl and NeMo-RL report it.

On the embedded default (or `--model`/`--rollout` configs): the actor is a megatron model from the
shipped base checkpoint; each iteration
1. **weight sync**: the trainer's weight stream into the engine, split into *gather* (time inside
   the stream: megatron TP/PP shards -> full Hugging Face tensors, the collectives included) and
   *load* (the engine's own `update_weights` work between tensors, vLLM's weight wake-up included),
   with the bytes moved and GB/s;
2. **wake** the engine (vLLM gives the KV cache back; the local engine has nothing to restore),
   after the weights, as the sleep contract requires (rollout/sleep.py);
3. **rollout**: episodes on `--episodes` training tasks through the trainer's own episode loop,
   split into *generate* (engine.generate: new tokens and tokens/s), *simulate* (the simulated
   person) and *score* (the sandboxed evaluator), the rest is the loop's bookkeeping;
4. **sleep** the engine.
Every phase is timed on rank 0 with the device synchronized; `--iterations` repeats the cycle
(the first includes warm-up effects and is reported apart from the mean of the others).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from sweet_megatron.checkpoint.model_io import (
    load_model_checkpoint,
    model_config_from_meta,
    read_meta,
    resolve_checkpoint,
)
from sweet_megatron.config import ConfigError, load_config
from sweet_megatron.env.agents import EngineAgent
from sweet_megatron.env.episode import run_episodes
from sweet_megatron.parallel import destroy, initialize, rank
from sweet_megatron.rollout import build_engine
from sweet_megatron.training import episodes as ep
from sweet_megatron.weights.resharding import stream_hf_weights


class _Clock:
    """Seconds spent in named parts (device-synchronized at both ends)."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.seconds: dict[str, float] = {}

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def add(self, name: str, dt: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + dt


class TimedEngine:
    """The engine, with the time and new tokens of its generate() calls counted."""

    def __init__(self, engine, clock: _Clock):
        self._engine, self._clock = engine, clock
        self.new_tokens = 0

    def generate(self, prompts, params):
        t0 = self._clock.now()
        out = self._engine.generate(prompts, params)
        self._clock.add("generate", self._clock.now() - t0)
        self.new_tokens += sum(len(g.token_ids) for gens in out for g in gens)
        return out

    def __getattr__(self, name):
        return getattr(self._engine, name)


class TimedSimulator:
    def __init__(self, simulator, clock: _Clock):
        self._simulator, self._clock = simulator, clock

    def respond(self, tasks, dialogues):
        t0 = self._clock.now()
        out = self._simulator.respond(tasks, dialogues)
        self._clock.add("simulate", self._clock.now() - t0)
        return out


def timed_stream(stream, clock: _Clock, counts: dict):
    """Pass the weight stream through, timing each next() (the gather) and counting bytes."""
    it = iter(stream)
    while True:
        t0 = clock.now()
        try:
            name, tensor = next(it)
        except StopIteration:
            clock.add("gather", clock.now() - t0)
            return
        clock.add("gather", clock.now() - t0)
        counts["bytes"] += tensor.numel() * tensor.element_size()
        counts["tensors"] += 1
        yield name, tensor


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sweet-bench rollout", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rollout", default="local", help="a config in sweet_megatron/conf/rollout (local, vllm)")
    p.add_argument("--episodes", type=int, default=32, help="episodes per iteration: episodes // sweet.rollouts_per_task training tasks, each that many times")
    p.add_argument("--iterations", type=int, default=3, help="wake, sync, rollout, sleep cycles")
    p.add_argument("--init-from", default=None,
                   help="the actor's checkpoint (e.g. <run_dir>/sft_model); default: train.init_from, the shipped base")
    p.add_argument("--max-turns", type=int, default=None, help="agent turns per episode (default: rollout.max_turns)")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = p.parse_args(argv)

    # lazy: the runner imports megatron-core (~5 s); --help and bad arguments stay fast
    from sweet_megatron.training.runner import ModelRunner

    try:
        cfg = load_config([f"rollout={args.rollout}"])
    except ConfigError as exc:
        raise SystemExit(f"sweet-bench rollout: {exc}") from None
    platform = initialize(cfg.parallel, seed=0)
    base = resolve_checkpoint(args.init_from or cfg.train.init_from)
    max_turns = args.max_turns or cfg.rollout.max_turns
    model_cfg = model_config_from_meta(read_meta(base))
    env = ep.environment(cfg.task)
    train_tasks, _ = ep.load_task_splits(cfg.task)
    tok = ep.build_tokenizer(ep.tokenizer_config(cfg.tokenizer, base), Path("."), train_tasks, env)
    actor = ModelRunner(model_cfg, cfg.parallel, platform, None, name="actor")
    load_model_checkpoint(base, actor.chunks)
    clock = _Clock(platform.is_cuda)
    engine = TimedEngine(build_engine(cfg.rollout, model_cfg, seed=cfg.seed), clock)
    simulator = TimedSimulator(ep.build_simulator(cfg.simulator, env), clock)
    evaluator = env.evaluator()

    def score(tasks, answers):
        t0 = clock.now()
        out = evaluator(tasks, answers)
        clock.add("score", clock.now() - t0)
        return out

    cycles = []
    for it in range(args.iterations):
        clock.seconds, engine.new_tokens, counts = {}, 0, {"bytes": 0, "tensors": 0}
        t0 = clock.now()  # update, then wake: after a level-2 sleep there are no weights to wake (rollout/sleep.py)
        stream = timed_stream(stream_hf_weights(actor.modules(), model_cfg, cfg.rollout.bucket_mb << 20), clock, counts)
        engine.update_weights(stream)
        clock.add("weight_sync", clock.now() - t0)
        t0 = clock.now()
        engine.wake()
        clock.add("wake", clock.now() - t0)
        tasks = ep.sample_tasks(train_tasks, args.episodes, cfg.sweet.rollouts_per_task, seed=it)
        agent = EngineAgent(engine, tok, ep.sampling(cfg.rollout, tok, greedy=False, seed=it))
        t0 = clock.now()
        episodes = run_episodes(agent, tasks, simulator, evaluator=score, max_turns=max_turns, tokenizer=tok,
                                protocol=env.protocol)
        clock.add("rollout", clock.now() - t0)
        t0 = clock.now()
        engine.sleep()
        clock.add("sleep", clock.now() - t0)
        s = clock.seconds
        s["load"] = s["weight_sync"] - s.get("gather", 0.0)
        s["loop_other"] = s["rollout"] - s.get("generate", 0.0) - s.get("simulate", 0.0) - s.get("score", 0.0)
        cycles.append({**{k: round(v, 4) for k, v in s.items()},
                       "weight_bytes": counts["bytes"], "weight_tensors": counts["tensors"],
                       "weight_sync_GBps": round(counts["bytes"] / s["weight_sync"] / 1e9, 3),
                       "episodes": len(episodes), "agent_turns": sum(len(e.turns) for e in episodes),
                       "new_tokens": engine.new_tokens,
                       "generate_tokens_per_s": round(engine.new_tokens / max(s.get("generate", 0.0), 1e-9), 1),
                       "success_rate": round(sum(e.success for e in episodes) / max(len(episodes), 1), 4)})
    steady = cycles[1:] or cycles
    keys = [k for k, v in steady[0].items() if isinstance(v, float)]
    out = {
        "model": f"{model_cfg.name}: {model_cfg.num_layers} layers, hidden {model_cfg.hidden_size}, "
                 f"{model_cfg.num_parameters() / 1e6:.1f}M parameters, vocab {model_cfg.vocab_size}",
        "engine": type(engine._engine).__name__, "device": str(platform.device), "threads": torch.get_num_threads(),
        "first_iteration": cycles[0],
        "steady_mean": {k: round(statistics.mean(c[k] for c in steady), 4) for k in keys},
    }
    if rank() == 0:
        print(json.dumps(out, indent=1))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=1) + "\n")
    destroy()
    return 0
