"""The config tree: one typed dataclass per part, composed by hydra from `sweet_megatron/conf/`.

Each part reads only its own branch (model, parallel, train, task, rollout, simulator, sweet).
The tree is closed: an unknown or mistyped key, in an override (`key=v`, `+key=v`, `++key=v`, `~key`)
or in a yaml file, is a ConfigError naming the key and the closest valid one (`check_closed`);
`__post_init__` checks values and says the fix. `compose_config(overrides)` composes the tree with
hydra's compose API; `load_config` validates it into a RunConfig. `sweet-train` uses both.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sweet_megatron.errors import ConfigError, check_choice
from sweet_megatron.model import ModelConfig
from sweet_megatron.parallel import ParallelConfig

CONF_DIR = Path(__file__).parent / "conf"
STAGES = ("pretrain", "sft", "collect", "critic", "actor", "eval", "all", "baselines")


@dataclass
class TokenizerConfig:
    kind: str = "sentencepiece"
    """'sentencepiece' (a .model file, trained from generated text when path is null) or 'hf'."""
    path: str | None = None
    """Model file or HF tokenizer directory; null trains a sentencepiece model into the run directory."""
    vocab_size: int = 2048
    """Vocabulary size when training a sentencepiece model."""
    number_pieces: bool = True
    """Train the sentencepiece model with " 0" ... " 999" (space, number) as single pieces, like
    words. A small model copies a stated number into code as one token far more easily than digit
    by digit; the pieces take about 1000 slots of the vocabulary."""
    markup_pieces: bool = False
    """Let trained sentencepiece pieces join letters, digits and punctuation (sentencepiece's
    split_by_unicode_script and split_digits off): an HTML page of the frontend_synthetic family
    takes about 140 tokens instead of about 380, so the tiny model can write it whole."""

    def __post_init__(self) -> None:
        check_choice("tokenizer.kind", self.kind, ("sentencepiece", "hf"))
        if self.markup_pieces and self.number_pieces:
            raise ConfigError("tokenizer.markup_pieces=true merges digits into pieces, which "
                              "tokenizer.number_pieces=true keeps apart: set tokenizer.number_pieces=false")
        if self.kind == "hf" and not self.path:
            raise ConfigError("tokenizer.kind=hf needs tokenizer.path (a directory with tokenizer.json)")


@dataclass
class OptimConfig:
    """Adam with a warmup + decay schedule, megatron's optimizer and param scheduler."""

    optimizer: str = "adam"
    """'adam' (AdamW-style, decoupled weight decay) or 'sgd'."""
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 5
    decay_style: str = "cosine"
    """'constant', 'linear' or 'cosine'."""
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    """Global gradient-norm clip (0 disables)."""

    def __post_init__(self) -> None:
        check_choice("optim.optimizer", self.optimizer, ("adam", "sgd"))
        check_choice("optim.decay_style", self.decay_style, ("constant", "linear", "cosine"))
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ConfigError(f"optim: need 0 <= min_lr <= lr and lr > 0 (got lr={self.lr}, min_lr={self.min_lr})")


@dataclass
class TrainConfig:
    """The trainer loop: steps, batch sizes, logging and checkpoints."""

    steps: int = 500
    """Optimizer steps for the SFT stage."""
    rows_per_step: int = 2
    """Packed rows in one global batch (split over data-parallel ranks, then into microbatches)."""
    pack_length: int = 512
    """Row length for packing (longer only when one group needs it, up to model.seq_length)."""
    context_loss_weight: float = 0.0
    """SFT loss weight of the tokens outside the agent's actions (the task description, the
    person's replies), relative to 1 for action tokens (0: actions only). Measured on the demo, it did
    not give a better warm start (docs/environments.md)."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3, min_lr=2e-4))
    """The warm start's optimizer (stage=sft)."""
    log_every: int = 50
    """Log metrics every N steps (more often in a stage of fewer than 10N steps: at least 10 points each)."""
    save_every: int = 0
    """Save a checkpoint every N steps within a stage (0: only at stage ends)."""
    keep_last: int = 2
    """Checkpoints kept on disk; older ones are deleted after a newer one is complete."""
    tensorboard: bool = True
    """Write TensorBoard event files beside metrics.jsonl."""
    progress: bool = True
    """Show progress on rank 0: a rich bar on a terminal, else a log line every 15 s (training steps, and a
    heartbeat naming the running phase when nothing else was logged)."""
    init_from: str | None = "builtin:base-small"
    """A megatron checkpoint (e.g. from `sweet-convert hf-to-mcore`) to start the model from."""

    def __post_init__(self) -> None:
        if self.steps < 0 or self.rows_per_step < 1:
            raise ConfigError("train.steps must be >= 0 and train.rows_per_step >= 1")
        if self.context_loss_weight < 0:
            raise ConfigError(f"train.context_loss_weight={self.context_loss_weight}: set it >= 0")


@dataclass
class PretrainConfig:
    """`stage=pretrain`: a base model for the synthetic family, from scratch (what a pretrained Llama
    is for real tasks). Language modelling of task specifications with every detail stated,
    followed by their code (env.synthetic.family.base_document): the base learns to write code from stated
    facts, and nothing about dialogues or questions. The result, `<run_dir>/base_model`, is what
    `train.init_from` starts the warm start from; the embedded default ships one
    (sweet_megatron/assets/base-small, made by `examples/make_base_model.sh`)."""

    steps: int = 3000
    rows_per_step: int = 4
    num_documents: int = 16384
    """Distinct training documents (train-split functions only, so held-out tasks stay unseen)."""
    seed: int = 1000
    """Task seed of the documents (independent of task.seed)."""
    eval_every: int = 250
    """Greedy code-writing accuracy on held-out documents every N steps (0: only at the end)."""
    eval_documents: int = 64
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3, min_lr=2e-4, warmup_steps=50))

    def __post_init__(self) -> None:
        if self.steps < 0 or self.rows_per_step < 1 or self.num_documents < 1:
            raise ConfigError("pretrain: need steps >= 0, rows_per_step >= 1, num_documents >= 1")


@dataclass
class TaskConfig:
    """Where tasks come from."""

    source: str = "synthetic"
    """The environment (env/registry.py; `sweet-colbench envs` lists them): 'synthetic' (generated
    offline from a seed), 'colbench_backend' (JSONL files in the backend schema),
    'colbench_frontend' (frontend records, rendered in Chromium) or 'frontend_synthetic' (compact
    synthetic pages generated from a seed)."""
    path: str | None = None
    """One JSONL file of tasks when source=colbench_backend (or colbench_frontend), split by a seeded shuffle into num_train
    training and num_eval held-out tasks (ignored when task.train_file is set)."""
    train_file: str | None = None
    """JSONL file of training tasks (the released schema, e.g. ColBench's backend_tasks/train.jsonl);
    every usable row is used (up to task.train_limit), less the task.val_size validation tasks."""
    eval_file: str | None = None
    """JSONL file of held-out tasks (e.g. backend_tasks/test.jsonl), its first task.eval_limit rows."""
    train_limit: int | None = None
    """Use only the first N usable rows of task.train_file (null: all)."""
    eval_limit: int | None = None
    """Use only the first N usable rows of task.eval_file (null: all; the paper evaluates on the
    first 1000 rows of test.jsonl)."""
    val_size: int = 0
    """Tasks carved from task.train_file (seeded by task.seed) and kept out of training, for tuning:
    evaluated as `val_*` next to the held-out set, or the held-out set itself without task.eval_file."""
    num_train: int = 1024
    num_eval: int = 128
    min_difficulty: int = 1
    max_difficulty: int = 3
    seed: int = 0
    eval_seed: int | None = None
    """Seed of the held-out tasks (null: task.seed). Fix it to compare seeds on one benchmark: the
    training tasks and demonstrations still follow task.seed."""
    num_demos: int = 1024
    """Scripted demonstrations for the SFT warm start."""
    demo_ask_prob: float = 0.7
    """Chance the noisy scripted demonstrator asks about each hidden detail."""

    def __post_init__(self) -> None:
        from sweet_megatron.env.base import TaskConfigError
        from sweet_megatron.env.registry import UnknownEnvironment, get

        if self.source == "colbench":
            raise ConfigError("task.source=colbench is named colbench_backend now: set task.source=colbench_backend "
                              "(or task=colbench_backend)")
        try:
            get(self.source).check_task_config(self)  # the environment's own keys
        except (UnknownEnvironment, TaskConfigError) as exc:
            raise ConfigError(str(exc)) from None
        for key in ("train_limit", "eval_limit"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"task.{key}={getattr(self, key)}: set it >= 1 or null (all rows)")
        if self.val_size < 0:
            raise ConfigError(f"task.val_size={self.val_size}: set it >= 0")
        if not 1 <= self.min_difficulty <= self.max_difficulty <= 4:
            raise ConfigError("task: need 1 <= min_difficulty <= max_difficulty <= 4")


@dataclass
class RolloutConfig:
    """The rollout engine and sampling."""

    engine: str = "local"
    """'local' (transformers with KV cache, CPU default) or 'vllm' (GPU, co-located)."""
    temperature: float = 0.7
    """Sampling temperature of collected episodes and candidate actions (eval is greedy)."""
    top_p: float = 1.0
    max_tokens: int = 96
    """Most tokens in one agent turn."""
    max_turns: int = 10
    """Agent turns per episode before it is cut off."""
    bucket_mb: int = 256
    """Weight-sync bucket size."""
    vllm_tensor_parallel: int = 1
    """vLLM's own TP degree (independent of the trainer's)."""
    gpu_memory_utilization: float = 0.5
    max_probe_gap: float = 1e-2
    """Largest allowed max |logp_engine - logp_trainer| (nats) on the probe batch after a weight sync."""

    def __post_init__(self) -> None:
        check_choice("rollout.engine", self.engine, ("local", "vllm"))
        if self.max_turns < 1 or self.max_tokens < 1:
            raise ConfigError("rollout.max_turns and rollout.max_tokens must be >= 1")


@dataclass
class SimulatorConfig:
    """The simulated person."""

    kind: str = "rule"
    """'rule' (deterministic, from the hidden information), 'engine' (a second LLM on a rollout
    engine of this process) or 'http' (an OpenAI-compatible endpoint)."""
    url: str | None = None
    model: str | None = None
    timeout_s: float = 30.0
    retries: int = 3
    engine: str = "local"
    """kind=engine: 'local' (transformers KV-cache engine, CPU or GPU) or 'vllm' (GPU)."""
    checkpoint: str | None = None
    """kind=engine: the simulator's own Hugging Face Llama directory (config.json + safetensors)."""
    tokenizer_kind: str = "hf"
    """kind=engine: 'hf' or 'sentencepiece', the simulator model's own tokenizer."""
    tokenizer_path: str | None = None
    """kind=engine: its tokenizer directory or file; null uses simulator.checkpoint (kind hf)."""
    max_tokens: int = 128
    """kind=engine: most tokens generated per reply (the reply is then cut at 400 characters)."""
    temperature: float = 0.0
    """kind=engine: sampling temperature (the reference's simulator is greedy)."""
    gpu_memory_utilization: float = 0.3
    """kind=engine, engine=vllm: the simulator engine's share of GPU memory."""

    def __post_init__(self) -> None:
        check_choice("simulator.kind", self.kind, ("rule", "engine", "http"))
        if self.kind == "http" and not self.url:
            raise ConfigError("simulator.kind=http needs simulator.url (e.g. http://127.0.0.1:8000/v1)")
        if self.kind == "engine":
            check_choice("simulator.engine", self.engine, ("local", "vllm"))
            check_choice("simulator.tokenizer_kind", self.tokenizer_kind, ("hf", "sentencepiece"))
            if not self.checkpoint:
                raise ConfigError("simulator.kind=engine needs simulator.checkpoint (a Hugging Face Llama "
                                  "directory, e.g. Llama-3.1-70B-Instruct)")
            if self.tokenizer_kind == "sentencepiece" and not self.tokenizer_path:
                raise ConfigError("simulator.tokenizer_kind=sentencepiece needs simulator.tokenizer_path (the .model file)")
            if self.max_tokens < 1 or self.temperature < 0:
                raise ConfigError("simulator.max_tokens must be >= 1 and simulator.temperature >= 0")


@dataclass
class SweetConfig:
    """SWEET-RL's critic and actor stages."""

    iterations: int = 1
    """collect -> critic -> actor rounds."""
    episodes_per_iter: int = 256
    """Episodes collected per iteration (sampled at rollout.temperature)."""
    rollouts_per_task: int = 4
    """Episodes per task in a collection round, so the critic gets same-task pairs."""
    offline_episodes: str | None = None
    """Import the first iteration's trajectories from a JSONL file in the reference implementation's
    layout (task, dialogue_history, answer, reward) instead of collecting them."""
    rows_per_step: int = 8
    """Packed rows per optimizer step in the critic, actor and baseline stages (pairs want larger,
    steadier batches than the warm start's train.rows_per_step)."""
    share_prefix: bool = True
    """Lay the sequences of one packing group out as a tree where they begin alike (a turn state's
    candidate actions, a trajectory pair's prompt, reference and task): the common prefix is computed
    once (data/packing.py). Same log-probs and gradients as flat rows; local layer spec only (with
    Transformer Engine or context parallelism the stages pack flat rows whatever this says)."""
    credit_check: bool = True
    """After training the critic: measure its turn ranking against the oracle on held-out synthetic
    turns (the credit-assignment check; about 60 s of the CPU demo on an AVX2-only 2-core machine)."""
    credit_baseline: bool = False
    """With credit_check: also train a critic without the reference solution on the same pairs and
    measure it the same way, next to the first (about 145 s more there; the comparison command turns
    it on)."""
    credit_states: int = 48
    """Held-out turn states the credit check scores (11 candidate actions each), drawn evenly over
    the held-out tasks; about 0.6 s a state per critic on 2 CPU cores. More states, a steadier
    estimate: the 3-seed comparison uses 160."""
    credit_policy_states: int = 48
    """Held-out turn states of the credit check's second population, the actor's own: states of
    episodes the actor samples on held-out tasks, each with sweet.num_candidates actions sampled from
    it, every distinct action scored once (the kind of actions the actor stage ranks, on tasks it
    never trained on). Costs one sampled episode on as many held-out tasks, the candidates' sampling
    and their scoring: about 40 s for 48 states on 2 CPU cores. 0: the fixed menu only."""
    critic_pairs: str = "best_vs_worse"
    """Which same-task trajectory pairs train the critic (and multi-turn DPO): 'best_vs_worse' (the
    reference implementation: the task's best against each worse one) or 'all_ordered' (every pair
    with a strictly higher reward chosen)."""
    critic_min_best_reward: float | None = 1.0
    """Trajectory pairs (critic and multi-turn DPO) come only from tasks whose best rollout reaches
    this reward: the reference implementation's filter, 1.0 (a task is used only if one of its
    rollouts passes every test; scripts/evaluate_code.py there). null: every task with two
    different rewards."""
    critic_steps: int = 30
    critic_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-4, min_lr=3e-5))
    """The critics' optimizer (the actor's critic and the credit check's baseline critic)."""
    critic_beta: float = 1.0
    critic_reduction: str = "per_turn_sum"
    """'per_turn_sum' (the paper: sum over turns of per-turn means) or 'pooled_mean' (the reference
    implementation: one mean over all agent tokens)."""
    critic_reference: bool = True
    """Show the actor's critic the reference solution (SWEET-RL). false: the paper's ablation without
    training-time information, the same critic and actor on the dialogue alone (then leave
    sweet.credit_baseline=false: that check compares the two critics itself)."""
    actor_states: int = 32
    """Turn states sampled for the actor stage per iteration."""
    actor_scorer: str = "critic"
    """What ranks the actor's candidate actions: 'critic' (SWEET-RL: the critic's advantage) or
    'oracle' (a diagnostic on synthetic tasks only: the oracle's value of each action, i.e. a perfect
    per-turn critic; it shows how much of the actor's result the critic's errors cost)."""
    num_candidates: int = 16
    pairs_per_turn: int = 4
    min_pair_margin: float = 0.0
    """Actor pairs need a critic score gap above this many standard deviations of the state's
    candidate scores (0: any strictly better pair, as in the paper)."""
    actor_steps: int = 30
    """Optimizer steps of the actor stage and of each baseline (rft, mtdpo)."""
    actor_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5, min_lr=5e-6))
    """The actor stage's optimizer (per-turn DPO)."""
    rft_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1.5e-4, min_lr=1.5e-5))
    """The rejection fine-tuning baseline's optimizer: plain NLL on the actor's own successes
    tolerates a larger step than DPO (3 times the actor's)."""
    mtdpo_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5, min_lr=5e-6))
    """The multi-turn (trajectory) DPO baseline's optimizer."""
    dpo_beta: float = 0.1
    nll_coef: float = 0.01

    def __post_init__(self) -> None:
        check_choice("sweet.critic_reduction", self.critic_reduction, ("per_turn_sum", "pooled_mean"))
        check_choice("sweet.critic_pairs", self.critic_pairs, ("best_vs_worse", "all_ordered"))
        check_choice("sweet.actor_scorer", self.actor_scorer, ("critic", "oracle"))
        if self.rows_per_step < 1:
            raise ConfigError("sweet.rows_per_step must be >= 1")
        if self.credit_states < 1:
            raise ConfigError(f"sweet.credit_states={self.credit_states}: set it >= 1 (or sweet.credit_check=false)")
        if self.credit_policy_states < 0:
            raise ConfigError(f"sweet.credit_policy_states={self.credit_policy_states}: set it >= 0 (0 turns it off)")
        if self.credit_policy_states and self.num_candidates < 2:
            raise ConfigError(f"sweet.credit_policy_states={self.credit_policy_states} with sweet.num_candidates="
                              f"{self.num_candidates}: one action a state makes no pair to rank; set num_candidates "
                              ">= 2 or credit_policy_states=0")
        if not self.critic_reference and self.credit_baseline:
            raise ConfigError("sweet.critic_reference=false with sweet.credit_baseline=true: the baseline critic of "
                              "the credit check is the critic without the reference itself; set "
                              "sweet.credit_baseline=false for the ablation run")
        if self.pairs_per_turn * 2 > self.num_candidates:
            raise ConfigError("sweet.pairs_per_turn must be at most num_candidates / 2")


@dataclass
class RunConfig:
    """The whole run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    sweet: SweetConfig = field(default_factory=SweetConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    stage: str = "all"
    """Which stage to run: pretrain (a base model, on its own), sft, collect, critic, actor, eval, all (the chain), baselines."""
    run_dir: str = "runs/default"
    """Output directory: checkpoints, metrics.jsonl, TensorBoard events, report."""
    seed: int = 0
    """Seed of the model's initialization, data order and sampling (the tasks follow task.seed)."""
    resume: bool = True
    """Resume from the run directory's latest complete checkpoint when there is one."""

    def __post_init__(self) -> None:
        check_choice("stage", self.stage, STAGES)


def register_schemas() -> None:
    """Register the schema with hydra's ConfigStore (the yaml tree extends `run_schema`)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Validate a composed DictConfig into RunConfig; value errors become ConfigError naming the key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), cfg)
        obj = OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except Exception as exc:  # omegaconf's errors name the full key
        raise ConfigError(str(exc).strip()) from exc
    assert isinstance(obj, RunConfig)
    return obj


def _nested_schema(schema: type, name: str) -> type | None:
    """The dataclass type of field `name` of dataclass `schema` (None for a leaf value)."""
    hint = typing.get_type_hints(schema).get(name)
    for candidate in (hint, *typing.get_args(hint)):  # `X | None` too
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


RENAMED = {
    "sweet.critic_lr": "sweet.critic_optim.lr (and sweet.critic_optim.min_lr, once lr / 10)",
    "sweet.actor_lr": "sweet.actor_optim.lr (and sweet.actor_optim.min_lr, once lr / 10; the baselines have "
                      "their own sweet.rft_optim and sweet.mtdpo_optim)",
}
"""Keys that were replaced, and what replaces them."""


def _unknown_key(dotted: str, valid: list[str]) -> ConfigError:
    if dotted in RENAMED:
        return ConfigError(f"`{dotted}` is no key any more: set {RENAMED[dotted]}")
    name = dotted.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    parent = dotted.rsplit(".", 1)[0] + "." if "." in dotted else ""
    hint = (f"did you mean `{parent}{close[0]}`?" if close
            else f"valid keys{' of ' + parent[:-1] if parent else ''}: {', '.join(valid)}")
    return ConfigError(f"unknown key `{dotted}`: {hint}")


def check_key(dotted: str, schema: type = None) -> None:  # type: ignore[assignment]
    """Raise ConfigError when `dotted` (e.g. 'parallel.tensor_paralel') is no key of the schema
    (default RunConfig), naming the closest valid key; `hydra.*` keys are hydra's own."""
    schema = schema or RunConfig
    parts = dotted.split(".")
    if parts[0] == "hydra":
        return
    for i, part in enumerate(parts):
        valid = [f.name for f in dataclasses.fields(schema)]
        if part not in valid:
            raise _unknown_key(".".join(parts[: i + 1]), valid)
        nested = _nested_schema(schema, part)
        if nested is None:
            if i + 1 < len(parts):
                raise ConfigError(f"`{'.'.join(parts[: i + 1])}` is a value, it has no key `{parts[i + 1]}`")
            return
        schema = nested


def check_closed(cfg: DictConfig, schema: type = None, prefix: str = "") -> None:  # type: ignore[assignment]
    """Every key of the composed `cfg` is a field of the schema (default RunConfig), however it got
    there (a `+key` override, a yaml file); raises ConfigError naming the first unknown key."""
    schema = schema or RunConfig
    valid = [f.name for f in dataclasses.fields(schema)]
    for key in cfg.keys():
        key = str(key)
        if not prefix and key == "hydra":
            continue
        if key not in valid:
            raise _unknown_key(prefix + key, valid)
        nested = _nested_schema(schema, key)
        value = cfg._get_node(key)
        if nested is not None and isinstance(value, DictConfig) and not value._is_none():
            check_closed(value, nested, f"{prefix}{key}.")


def _check_overrides(overrides: list[str]) -> None:
    """Unknown keys and config-group options in overrides, named before hydra composes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # a malformed override
        raise ConfigError(str(exc).strip()) from exc
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir() and not p.name.startswith("_")}
    for ov in parsed:
        key = ov.key_or_group
        if key in groups:
            options = sorted(f.stem for f in (CONF_DIR / key).glob("*.yaml"))
            value = ov.value()
            if isinstance(value, str) and value not in options:
                close = difflib.get_close_matches(value, options, n=1, cutoff=0.5)
                raise ConfigError(f"{key}={value}: no such {key} config"
                                  + (f"; did you mean `{key}={close[0]}`?" if close else "")
                                  + f" (options: {', '.join(options)})")
            continue
        check_key(key)


def compose_config(overrides: list[str] | None = None, config_name: str = "config",
                   return_hydra_config: bool = False) -> DictConfig:
    """Compose conf/<config_name>.yaml with hydra-style overrides (e.g. ["parallel=tp2", "train.steps=3"])
    into a DictConfig whose every key the schema knows (ConfigError otherwise); with
    return_hydra_config, hydra's own node too (what `--cfg all` prints)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(overrides or [])
    _check_overrides(overrides)
    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=return_hydra_config)
    except Exception as exc:  # hydra's override and key errors
        raise ConfigError(str(exc).strip()) from exc
    check_closed(cfg)
    return cfg


def load_config(overrides: list[str] | None = None, config_name: str = "config") -> RunConfig:
    """`compose_config`, validated into a RunConfig."""
    return to_run_config(compose_config(overrides, config_name))
