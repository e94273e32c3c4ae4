"""Cost of the startup hook for Python processes that never import lm_eval.

Two fresh virtualenvs made side by side: one bare, one with the pack's wheel installed (its .pth arms
the import hook). Runs ``python -c pass`` alternately in both and reports the median ratio.

    python bench/bench_startup.py [--runs 60]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def _time(python: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(python), "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bare = _venv(tmp / "bare")
        pack = _venv(tmp / "pack")
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp / "dist"), str(ROOT)], check=True)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(pack), "install", "-q", "--no-deps",
                        str(next((tmp / "dist").glob("*.whl")))], check=True)
        check = subprocess.run([str(pack), "-c", "import sys; print('qa_tasks._startup' in sys.modules)"],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert check == "True", "the hook is not armed in the pack venv"
        bare_t, pack_t = [], []
        for _ in range(args.runs // 10):  # interleave blocks so drift hits both sides alike
            bare_t += _time(bare, 10)
            pack_t += _time(pack, 10)
    b, p = statistics.median(bare_t), statistics.median(pack_t)
    print(f"python -c pass, median of {len(bare_t)} runs each")
    print(f"  bare venv:           {b * 1000:.1f} ms")
    print(f"  venv with the pack:  {p * 1000:.1f} ms")
    print(f"  ratio pack/bare:     {p / b:.3f}")


if __name__ == "__main__":
    main()
