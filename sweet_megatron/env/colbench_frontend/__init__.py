"""ColBench frontend design: the agent writes a web page with a person who has the reference page in
mind; the answer is rendered offline in headless Chromium and compared with the reference.

- records.py: task records (`problem_description`, `ground_truth` HTML) and `extract_html`.
- tailwind.py: the Tailwind 2.2.19 stylesheet, fetched once at install time, purged per page.
- render.py: a pool of contained headless Chromium browsers (Playwright driving Debian's chromium).
- similarity.py: the whole-page similarity used as the reward (optional CLIP term), win rate.
- synthetic.py: the synthetic page families (page-v1; the compact page-mini-v1 the tiny model trains
  on) and the oracle's best next action.
- training.py: the scripted agent, demonstrations, oracle of action values (env.base.Oracle) and
  the fixed baseline agent of the win rate.
- simulator.py: the rule-based simulated person and the LLM-backed one (simulator=engine/http).
- environment.py: the registered `Environment`s (task.source=colbench_frontend: real records;
  frontend_synthetic: compact synthetic pages) and what the episode loop needs (prompt, answer
  mark, rewarder: one browser pool per process, scores cached by page).
- __main__.py: `python -m sweet_megatron.env.colbench_frontend fetch-tailwind | generate | score`;
  `sweet-colbench score` runs the same scoring on frontend task files.

Not here yet: a VLM-backed person (the LLM one reads the reference as HTML).
"""
