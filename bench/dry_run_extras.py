"""Do the pack's extras resolve together? ``pip install --dry-run`` of ``.[vllm,api,train,math]``.

vLLM pins its own torch and caps transformers (0.33: ``transformers>=5.16.1,<5.21``), TRL's own
``vllm`` extra caps vLLM at 0.31, lm-eval is pinned to the versions the tests cover. This asks pip's
resolver (PyPI, nothing installed) for the set it would install and compares the packages that matter
with ``TESTED``, the set README.md names. Exit 0: resolved to that set; 1: resolved to another set
(update README.md and ``TESTED`` once that set is tested); 2: no resolution.

    python -m bench.dry_run_extras                    # .[vllm,api,train,math]
    python -m bench.dry_run_extras --extras vllm,api  # another combination
    python -m bench.dry_run_extras --json report.json # keep pip's full report

Runs without constraints.txt on purpose: its CPU torch pin is for the test environment without vLLM,
while vLLM needs its own torch build.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTED = {"vllm": "0.33.0", "transformers": "5.20.2", "torch": "2.14.0", "trl": "1.16.0", "peft": "0.21.2",
          "lm-eval": "0.4.13", "accelerate": "1.15.0", "bitsandbytes": "0.50.2", "math-verify": "0.9.0",
          "openai": "3.57.0", "aiohttp": "3.14.5", "datasets": "5.2.0"}


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-")


def resolve(extras: str, no_deps: bool = False) -> tuple[dict[str, str], dict]:
    """(name -> version, pip's report) of what pip would install for ``.[extras]``
    (raises CalledProcessError if it cannot resolve)."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-build-isolation",
           "--quiet", "--report", "-", *(["--no-deps", "--no-index"] if no_deps else []), f".[{extras}]"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    report = json.loads(out[out.index("{"):])
    return {_canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extras", default="vllm,api,train,math")
    parser.add_argument("--json", type=Path, help="write pip's full installation report here")
    parser.add_argument("--smoke", action="store_true",
                        help="offline: resolve the pack alone (--no-deps); checks the command and the report")
    args = parser.parse_args(argv)
    try:
        versions, report = resolve(args.extras, no_deps=args.smoke)
    except subprocess.CalledProcessError as e:
        print(f"error: .[{args.extras}] does not resolve:\n{e.stderr.strip()[-3000:]}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.smoke:
        print(f".[{args.extras}] without dependencies: {versions}")
        return 0 if "lm-eval-qa-pack" in versions else 1
    print(f".[{args.extras}] resolves to {len(versions)} packages; the ones that matter:")
    drift = 0
    for name, tested in TESTED.items():
        got = versions.get(name, "-")
        drift += got != tested
        print(f"  {name:14} {got:12} {'' if got == tested else f'(README names {tested})'}")
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
