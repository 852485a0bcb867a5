"""The synthetic family's rule-based simulated person (simulator=rule): replies from the task's
structured hidden details only (family.synthetic_reply)."""

from __future__ import annotations

from sweet_megatron.env.base import last_agent_message
from sweet_megatron.env.colbench_backend.tasks import Task
from sweet_megatron.env.synthetic.family import spec_of, synthetic_reply


class SyntheticSimulator:
    """Answers the agent's last message about the task's hidden details (at most two topics)."""

    def respond(self, tasks: list[Task], dialogues: list[list]) -> list[str]:
        return [synthetic_reply(spec_of(task), last_agent_message(dialogue))
                for task, dialogue in zip(tasks, dialogues, strict=True)]
