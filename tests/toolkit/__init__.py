"""Test toolkit: what the tests (and a few benches) import; tests/conftest.py holds only fixtures and hooks.

- ``env``: where things are (``ROOT``, ``SITE``, ``DATA_DIR``, ``BIN``), the offline environment of the test
  session and ``lm_eval_env()``, the environment of an ``lm_eval`` subprocess;
- ``lm_eval_runs``: ``run_command`` (a command line forked from the pre-imported server, else fresh),
  ``run_lm_eval`` (the real ``lm_eval`` CLI and its results JSON), ``read_samples``;
- ``forkserver``: that server, which starts the pack's command lines as processes forked from one that has
  already imported torch, transformers, lm-eval, peft and TRL;
- ``scripted_lm``: the ``--model scripted`` lm-eval model, whose outputs come from a responder, so scores
  are known exactly; ``site/sitecustomize.py`` registers it in processes started with ``site`` on PYTHONPATH;
- ``squad_responders``, ``math_responders``, ``recipe_responders``: the responders, one module per task
  family;
- ``serve``: a real OpenAI-compatible server (``transformers serve``) on a free loopback port, and its
  module-scoped fixture (also used by ``bench.bench_rollout --api``);
- ``xdist_groups``: the pytest-xdist work units (a test's ``xdist_group``, else its file), the order that
  starts ``heavy`` tests first, and the scheduler ``--dist loadgroup`` uses (the hooks are in conftest.py);
- ``layers``: the shipped modules' import graph, its cycles and upward imports (``python -m
  tests.toolkit.layers`` prints them);
- ``sim_site/``: simulates environments the pack must survive (packages hidden, lm-eval targets moved);
- ``vllm_standin/``: a test-only stand-in for vLLM's Python API, for the lm-eval vLLM wrapper's contract.

The tiny offline causal LM the tests train and evaluate is built by ``qa_tasks.testing.build_tiny_model``.
"""
