"""lm-eval QA task pack: task families, scorers, data loading and the rollout layer.

Layers, each importing only the ones above it in this list:

- ground: ``errors``, ``files``, ``data``, ``hardware``, ``extras``, ``aggregations``, ``testing``,
  ``family`` and the registry ``families`` (no lm-eval internals);
- ``rollout``: multi-call conversation plans and the layer that runs them;
- ``harness``: the only code that touches lm-eval's internals (start-up hook, patches, task index, checks);
- the families ``squad``, ``recipe_mpr``, ``math``: data, prompts and metrics, each exporting ``FAMILY``.

``finetune``, ``leaderboards`` and ``qa_pack_demo`` build on this package; it imports none of them
(families name their functions in those layers as ``"module:function"`` strings).

Kept import-free on purpose: the startup hook imports ``qa_tasks.harness.startup`` in every Python
process, so this package must cost nothing to import.
"""
