"""ColBench frontend design: the agent writes a web page with a person who has the reference page in
mind; the answer is rendered offline in headless Chromium and compared with the reference.

- records.py: task records (`problem_description`, `ground_truth` HTML) and `extract_html`.
- tailwind.py: the Tailwind 2.2.19 stylesheet, fetched once at install time, purged per page.
- render.py: a pool of contained headless Chromium browsers (Playwright driving Debian's chromium).
- similarity.py: the whole-page similarity used as the reward, and win rate against a baseline.
- __main__.py: `python -m sweet_megatron.env.colbench_frontend fetch-tailwind | score --self | score --answers`.

Not here yet (next steps): the synthetic page family with its oracle, the rule-based and
LLM/VLM-backed simulated person, and the `Environment` plug-in the trainer will load.
"""
