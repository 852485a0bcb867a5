"""Environments as plug-ins: the registry, what each environment says it has, `sweet-colbench envs`
and the trainer-side refusals. (No import cycle among the env modules: tests/unit/test_imports.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

import sweet_megatron.env as env_package
from sweet_megatron.config import ConfigError, TaskConfig
from sweet_megatron.env import cli, registry
from sweet_megatron.env.base import Environment, MissingCapability
from sweet_megatron.env.colbench_backend.environment import ColBenchBackend
from sweet_megatron.env.synthetic.environment import SyntheticEnvironment


def test_builtin_names_and_config_groups():
    """Every registered environment has a task= config group of its name, and each group's
    task.source names a registered environment."""
    assert registry.names() == ("synthetic", "colbench_backend", "colbench_frontend", "frontend_synthetic")
    groups = sorted(p.stem for p in (Path(env_package.__file__).parent.parent / "conf" / "task").glob("*.yaml"))
    assert groups == sorted(registry.names())
    for name in registry.names():
        env = registry.get(name)
        assert isinstance(env, Environment) and env.name == name


def test_capabilities():
    syn, backend, frontend, pages = (registry.get(n) for n in registry.names())
    assert syn.supports_training and syn.oracle and syn.demonstrations and syn.base_corpus
    assert backend.supports_training and backend.oracle is backend.demonstrations is backend.base_corpus is None
    assert frontend.supports_training and frontend.oracle is frontend.demonstrations is frontend.base_corpus is None
    assert pages.supports_training and pages.oracle and pages.demonstrations and pages.base_corpus is None
    assert pages.protocol is frontend.protocol
    # the answer protocols share ColBench's marker and last-turn rule; only the opening differs
    assert {e.protocol.marker for e in (syn, backend, frontend, pages)} == {"I WANT TO ANSWER:"}
    assert all(e.protocol.last_turn_answers for e in (syn, backend, frontend, pages))


def test_get_unknown_and_register():
    with pytest.raises(registry.UnknownEnvironment, match="task.source='nope': no such environment; registered: "
                                                         "synthetic, colbench_backend, colbench_frontend, "
                                                         "frontend_synthetic"):
        registry.get("nope")
    with pytest.raises(ValueError, match="'synthetic' is registered already"):
        registry.register(SyntheticEnvironment())
    with pytest.raises(TypeError, match="expected an env.base.Environment instance"):
        registry.register(SyntheticEnvironment)

    class Plugin(ColBenchBackend):
        name = "plugin_backend"
        summary = "a plug-in: the backend under another name"

    try:
        registry.register(Plugin())
        assert registry.names()[-1] == "plugin_backend"
        cfg = TaskConfig(source="plugin_backend", path="builtin:colbench/backend_test_0-199.jsonl", num_train=3,
                         num_eval=2, num_demos=0)  # the config accepts a registered plug-in by name
        from sweet_megatron.training.episodes import load_task_splits

        train, held = load_task_splits(cfg)
        assert (len(train), len(held)) == (3, 2)
    finally:
        registry._ENVIRONMENTS.pop("plugin_backend", None)


def test_task_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="task.source=colbench is named colbench_backend now"):
        TaskConfig(source="colbench")
    with pytest.raises(ConfigError, match="registered: synthetic, colbench_backend, colbench_frontend"):
        TaskConfig(source="colbench_back")
    with pytest.raises(ConfigError, match="task.source=colbench_backend needs task.train_file"):
        TaskConfig(source="colbench_backend")
    with pytest.raises(ConfigError, match="task.train_file/task.eval_file need task.source=colbench_backend"):
        TaskConfig(train_file="x.jsonl")


def test_require_names_environment_capability_and_fix():
    from sweet_megatron.training import episodes as ep

    backend = registry.get("colbench_backend")
    with pytest.raises(MissingCapability, match="the colbench_backend environment has no oracle of action values"):
        backend.require("oracle")
    with pytest.raises(ConfigError, match="task.source=colbench_backend: the colbench_backend environment has no "
                                          r"scripted demonstrations \(task.num_demos > 0\); set task.num_demos=0"):
        ep.scripted_demos(backend, TaskConfig(source="colbench_backend", path="x", num_demos=4), [], None, None, 10)
    with pytest.raises(ConfigError, match=r"has no base-model corpus \(stage=pretrain\); .*use task=synthetic"):
        ep.base_documents(backend, 4, 0)
    assert not ep.has_oracle(backend, [])
    syn = registry.get("synthetic")
    assert ep.require(syn, "oracle") is syn.oracle


def test_an_environment_without_training_support_refuses_stages_with_the_reason():
    from sweet_megatron.training import episodes as ep

    class Untrainable(ColBenchBackend):
        name = "untrainable"
        supports_training = False
        missing_for_training = "no rewards yet"

    for stage in ("all", "sft", "eval", "pretrain"):
        with pytest.raises(ConfigError, match=f"task.source=untrainable: stage={stage} needs training support, "
                                              r"which the untrainable environment does not have yet \(no rewards yet\)"):
            ep.require_training(Untrainable(), stage)
    for name in registry.names():
        ep.require_training(registry.get(name), "all")  # no error


def test_frontend_tasks_protocol_and_person():
    frontend = registry.get("colbench_frontend")
    # what it does have: tasks, its protocol, its rule-based person
    cfg = TaskConfig(source="colbench_frontend", path="builtin:colbench/frontend_test_0-49.jsonl", num_train=40,
                     num_eval=10, num_demos=0)
    train, held = frontend.task_splits(cfg)
    assert (len(train), len(held)) == (40, 10) and not {t.task_id for t in train} & {t.task_id for t in held}
    system, first = frontend.protocol.opening(held[0], 10)
    assert held[0].problem_description in system and first is None
    from sweet_megatron.config import SimulatorConfig
    from sweet_megatron.training.episodes import build_simulator

    assert type(build_simulator(SimulatorConfig(), frontend)).__name__ == "FrontendRuleSimulator"
    with pytest.raises(ConfigError, match="read by task.source=colbench_backend only"):
        TaskConfig(source="colbench_frontend", train_file="x.jsonl")


def test_envs_listing(capsys):
    assert cli.main(["envs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(registry.names())
    by_name = {line.split()[0]: line for line in lines}
    assert "training, demos, base corpus, oracle " in by_name["synthetic"]
    assert "training, no demos, no base corpus, no oracle " in by_name["colbench_backend"]
    assert "training, no demos, no base corpus, no oracle " in by_name["colbench_frontend"]
    assert "training, demos, no base corpus, oracle " in by_name["frontend_synthetic"]
