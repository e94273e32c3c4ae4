"""The only code that touches lm-eval's internals.

- ``startup``: the ``.pth`` start-up hook; it waits for lm-eval's modules to be imported, then ``hook`` patches them;
- ``hook``: the one table of patches (task discovery without ``--include_path``, the rollout layer, checks
  before a run, one-line CLI errors);
- ``checks``: what a run is checked for before any model loads;
- ``task_index``: lm-eval's index of the pack's own folder (task names, families, YAML options, documents);
- ``api_endpoint``: reachability and failures of lm-eval's API-model endpoints.

May import: the ground modules of ``qa_tasks`` and ``qa_tasks.rollout``; never a family by name.
"""
