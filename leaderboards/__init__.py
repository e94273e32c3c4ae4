"""Leaderboards from lm-eval results: ``python -m leaderboards build RESULTS_DIR... -o LEADERBOARD.md``.

Reads the folders ``lm_eval --output_path ... --log_samples`` writes (``results_*.json``,
``samples_*.jsonl``; SQuAD ``latency_*.json``; finetune ``eval/step-N`` folders) and writes markdown
(with PNG plots beside it), CSV or JSON. ``python -m qa_pack_demo`` runs the whole pipeline.

May import: ``qa_tasks`` (the family registry, the harness's task index); never ``finetune`` or the demo.
"""

from leaderboards.build import FORMATS, BuildReport, build

__all__ = ["FORMATS", "BuildReport", "build"]
