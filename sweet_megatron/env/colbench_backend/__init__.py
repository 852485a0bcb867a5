"""The ColBench backend environment: the agent writes a Python function with a person who knows what
it should do; the answer is run on the task's tests in a sandbox against the reference.

- tasks.py: Task, load_tasks(path), read_task_file, save_tasks, TaskFormatError, extract_code
- boundary.py: a test expression split at the sandbox boundary
- evaluator.py: BackendEvaluator, EvaluatorConfig, score_answers, default_evaluator
- simulator.py: CodeReplySimulator (simulator=rule: answers from the reference code only)
- environment.py: the registered `Environment` (task=colbench_backend): splits, protocol, simulator, evaluator

Nothing here imports torch, so the task loader and the evaluator run in light processes.
"""
