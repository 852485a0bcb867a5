"""What the episode loop needs from the frontend environment, in one place, for the trainer's
`Environment` plug-in (issue 20) to wrap:

- SYSTEM_PROMPT (format with problem_description) and ANSWER_MARK: the agent asks questions or
  shows draft pages; "I WANT TO ANSWER:" followed by the page ends the episode.
- tasks: records.load_frontend_tasks(path) (real: builtin:colbench/frontend_test_0-49.jsonl), or
  synthetic.generate_frontend_tasks(n, seed) (synthetic pages; synthetic.oracle_action is their oracle).
- simulator: simulator.FrontendRuleSimulator() (same respond(tasks, dialogues) interface as
  env/simulators.py), or simulator.build_frontend_simulator(SimulatorConfig) for rule/http/engine;
  the critic's training-time information is FrontendTask.ground_truth (and `synthetic` when set).
- reward: FrontendRewarder(pool).score(tasks, answers) -> one similarity in [0, 1] per answer
  (answer text after the mark; the page is cut out with extract_html; no page -> 0.0).
"""

from __future__ import annotations

from sweet_megatron.env.colbench_frontend.records import FrontendTask, extract_html
from sweet_megatron.env.colbench_frontend.render import BrowserPool, RenderResult
from sweet_megatron.env.colbench_frontend.similarity import PageScore, page_similarity

ANSWER_MARK = "I WANT TO ANSWER:"
SYSTEM_PROMPT = (
    "You are a frontend design agent. A person wants a web page built with Tailwind CSS "
    "(<link href=\"https://cdn.jsdelivr.net/npm/tailwindcss@2.2.19/dist/tailwind.min.css\" rel=\"stylesheet\">); "
    "images come from https://picsum.photos/id/48/W/H. Ask one short question per turn about the "
    "design, or show a draft page in <html>...</html> and the person will tell you how it differs "
    "from what they want. When you are ready, write I WANT TO ANSWER: and then the whole page.\n\n"
    "{problem_description}"
)


class FrontendRewarder:
    """Rewards for final answers: the agent's page rendered and compared with the reference.
    References are rendered once per task id and kept."""

    def __init__(self, pool: BrowserPool):
        self.pool = pool
        self._references: dict[str, RenderResult] = {}

    def score_details(self, tasks: list[FrontendTask], answers: list[str | None]) -> list[PageScore]:
        todo = [t for t in dict((t.task_id, t) for t in tasks).values() if t.task_id not in self._references]
        for t, r in zip(todo, self.pool.render([t.ground_truth for t in todo])):
            self._references[t.task_id] = r
        pages = self.pool.render([extract_html(a) for a in answers])
        return [page_similarity(p, self._references[t.task_id]) for p, t in zip(pages, tasks, strict=True)]

    def score(self, tasks: list[FrontendTask], answers: list[str | None]) -> list[float]:
        return [s.score for s in self.score_details(tasks, answers)]
