"""Environments: the kinds of collaborative task, one folder each, behind one interface, plus what
they share (the episode loop, the LLM-backed simulated person, the engine agent, the sandbox).

Entry points (import them from their modules; this package imports nothing, so that the sandbox
and the task loaders stay free of torch):

- base.py: Environment (task splits, AnswerProtocol, rule_simulator, evaluator; optional
  demonstrations, base_corpus, oracle; supports_training), Score, MissingCapability
- registry.py: register(env), get(name), names(): task.source (the task= config group) is the key
- colbench_backend/: real backend records (tasks.py), the sandboxed test evaluator
  (evaluator.py, boundary.py), the code-reply person (simulator.py), environment.py
- synthetic/: the tariff-v1 family (family.py), its protocol, person, oracle (with the credit
  menu), scripted agent, demonstrations and base corpus (demos.py), environment.py
- colbench_frontend/: frontend design records, Chromium rendering and page similarity, its person,
  the synthetic page families (synthetic.py), their scripted agent, demonstrations, oracle and
  baseline agent (training.py), and environment.py (colbench_frontend on real records and
  frontend_synthetic on compact synthetic pages, both trainable)
- episode.py: run_episodes(agent, tasks, simulator, evaluator, max_turns, protocol=...), Episode, Turn
- simulators.py: LLMSimulator(EngineChatBackend | OpenAIChatBackend), build_llm_simulator, SimulatorError
- agents.py: EngineAgent(engine, tokenizer, params)
- sandbox.py: run_tests(code, tests, config), SandboxConfig
- cli.py: the `sweet-colbench` command (envs, generate, score, play)
"""
