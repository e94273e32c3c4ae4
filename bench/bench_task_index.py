"""One ``lm_eval run`` of pack tasks: pack-only task index vs lm-eval's full index.

When every task of a run is the pack's, the startup hook indexes the pack's folder alone. The
baseline arm runs the same command with ``--include_path`` naming an empty folder, which adds no task
but makes the hook keep lm-eval's full index (~14,700 built-in entries), as every run did before.
Both arms use the scripted model of the tests (no weights), so the difference is the index.

    python -m bench.bench_task_index [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import SMOKE_REPEATS, add_arguments, compare

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("QA_PACK_DATA_DIR") or ROOT.parent / "shared" / "data")


def _run(extra: list[str]) -> None:
    env = {**os.environ, "QA_PACK_DATA_DIR": str(DATA), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "toolkit" / "site"), str(ROOT)])}
    cmd = [str(Path(sys.executable).parent / "lm_eval"), "run", "--model", "scripted", "--model_args",
           "responder=tests.toolkit.recipe_responders:gold", "--tasks", "recipe_mpr", "--limit", "2", *extra]
    subprocess.run(cmd, check=True, capture_output=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as empty:
        report = compare({"full index": lambda: _run(["--include_path", empty]), "pack-only index": lambda: _run([])},
                         repeats=SMOKE_REPEATS if args.smoke else args.repeats)
    print(report.markdown(ratio=("full index", "pack-only index")))


if __name__ == "__main__":
    main()
