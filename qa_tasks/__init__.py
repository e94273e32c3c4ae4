"""lm-eval QA task pack: task families, scorers, data loading and the rollout layer.

Kept import-free on purpose: the startup hook imports ``qa_tasks._startup`` in every Python
process, so this package must cost nothing to import.
"""
