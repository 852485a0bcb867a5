"""The synthetic tariff family ("tariff-v1"): ColBench-backend-schema tasks small enough for a tiny
model to learn on CPU.

- family.py: the tasks (generate_tasks, SyntheticSpec, check_record), the person's replies, answers
  decided without running code, the scripted policy and the base-model documents
- protocol.py: SYSTEM_PROMPT and PROTOCOL (the problem inside the system message)
- simulator.py: SyntheticSimulator (simulator=rule)
- oracle.py: oracle_action_value, depends_on_hidden_code, SyntheticOracle (with the credit menu)
- demos.py: ScriptedAgent, SyntheticDemonstrations (SFT warm start), SyntheticBaseCorpus (pretrain)
- environment.py: the registered `Environment` (task=synthetic)
"""
