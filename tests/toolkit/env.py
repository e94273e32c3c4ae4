"""Where things are and the environment the tests run commands in.

- ``ROOT`` (the repository), ``SITE`` (``tests/toolkit/site``: registers ``--model scripted``), ``DATA_DIR``
  (the shared data: ``QA_PACK_DATA_DIR``, else ``../shared/data`` beside the checkout), ``BIN`` (this
  interpreter's scripts folder: ``lm_eval``, ``accelerate``, ...);
- ``use_offline_environment()``: makes this process (and so every process it starts) offline, with the
  shared data; the test session calls it once (tests/conftest.py);
- ``lm_eval_env(**extra)``: the environment of an ``lm_eval`` subprocess: offline, the shared data, the
  scripted model registered.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["BIN", "DATA_DIR", "ROOT", "SITE", "lm_eval_env", "use_offline_environment"]

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "tests" / "toolkit" / "site"
DATA_DIR = Path(os.environ.get("QA_PACK_DATA_DIR") or ROOT.parent / "shared" / "data").resolve()
BIN = Path(sys.executable).parent


def use_offline_environment() -> None:
    """No Hugging Face downloads, no tokenizer threads, ``QA_PACK_DATA_DIR`` = ``DATA_DIR`` (absolute), in
    this process and the ones it starts."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["QA_PACK_DATA_DIR"] = str(DATA_DIR)


def lm_eval_env(**extra: str) -> dict[str, str]:
    """Environment for an lm_eval subprocess: offline, local data, scripted model registered."""
    env = dict(os.environ)
    env.update({"QA_PACK_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "PYTHONPATH": os.pathsep.join([str(SITE), str(ROOT)])})
    env.update(extra)
    return env
