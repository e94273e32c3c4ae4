"""The module an ``lm_eval_qa_pack_hook.pth`` of an earlier install imports.

It installs the hook the way the current ``.pth`` does, so such a file keeps working until the next install
replaces it.
"""

import qa_tasks.harness.startup  # noqa: F401 (installs the hook)
