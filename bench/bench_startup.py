"""Cost of the startup hook for Python processes that never import lm_eval.

Two fresh virtualenvs made side by side: one bare, one with the pack's wheel installed (its .pth arms
the import hook). Each repeat times a block of ``python -c pass`` runs in both, interleaved.

    python -m bench.bench_startup [--repeats 7] [--runs 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import SMOKE_REPEATS, add_arguments, compare

ROOT = Path(__file__).resolve().parent.parent


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def _block(python: Path, runs: int):
    def run() -> None:
        for _ in range(runs):
            subprocess.run([str(python), "-c", "pass"], check=True)
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="python -c pass runs per arm and repeat")
    add_arguments(parser, repeats=7)
    args = parser.parse_args(argv)
    runs, repeats = (2, SMOKE_REPEATS) if args.smoke else (args.runs, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bare = _venv(tmp / "bare")
        pack = _venv(tmp / "pack")
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp / "dist"), str(ROOT)], check=True)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(pack), "install", "-q", "--no-deps",
                        str(next((tmp / "dist").glob("*.whl")))], check=True)
        check = subprocess.run([str(pack), "-c", "import sys; print('qa_tasks.harness.startup' in sys.modules)"],
                               capture_output=True, text=True, check=True).stdout.strip()
        if check != "True":
            raise SystemExit("the hook is not armed in the pack venv")
        report = compare({"with the pack": _block(pack, runs), "bare": _block(bare, runs)}, repeats=repeats)
    print(f"python -c pass, {runs} runs per arm and repeat (times are per block)")
    print(report.markdown(ratio=("with the pack", "bare")))


if __name__ == "__main__":
    main()
