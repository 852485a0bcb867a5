"""The trainer's stages, one module each, over a shared `StageContext` (stages/context.py):

  pretrain   a base model for the synthetic family (stage=pretrain, on its own)
  sft        warm start on noisy scripted demonstrations (token NLL on agent actions)
  collect    episodes with the current actor (sampling) on training tasks, evaluator rewards
  critic     asymmetric critic (reference solution prepended), Bradley-Terry on trajectory pairs
  actor      per-turn candidates from the engine, scored by the critic, DPO on top/bottom pairs
  eval       greedy episodes on held-out tasks: success rate and mean reward
  baselines  rejection fine-tuning and multi-turn (trajectory) DPO from the same warm start

`trainer.py` chains them: the table `PLANS` maps each `stage=` to its list of steps.
"""
