"""lm-eval 0.4.13's own test suite, with and without the pack installed: the same outcome per test.

The pack's startup hook (``lm_eval_qa_pack_hook.pth``) patches lm-eval's ``TaskManager`` in every Python
process of the environment it is installed in, so installing the pack must not change what lm-eval's
own tests see. This builds two virtualenvs from ``requirements/lock.txt`` that differ only in the pack
(A: lm-eval with its test extras and the pack's dependencies; B: the same plus the pack's wheel, built
from this checkout and installed the way users get it), runs lm-eval's tests offline in each, and lists
every test whose outcome (passed/failed/skipped/error) differs. Exit status 1 when any does.

    python -m bench.lm_eval_suite [-k test_task_manager.py ...] [--jobs 2] [--out summary.json]
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
LM_EVAL = "0.4.13"
EXTRAS = "dev,hf,api,math,ruler"  # lm-eval's test extra plus the backends and task extras its tests import
# The sdist ships only tests/test*.py (its MANIFEST.in says `recursive-include tests` with no pattern).
# lm_eval_fixtures/ holds what those files need from EleutherAI/lm-evaluation-harness (commit 4e7e0d47,
# 0.4.13.dev0; these files last changed in Feb 2026, before the release): tests/__init__.py, conftest.py
# (fixtures), utils.py (test_tasks.py), test_configs/ (test_task_manager.py), testconfigs/*.yaml
# (test_unitxt_tasks.py); import blocks re-sorted for ruff. Left out: tests/testdata (expected tables
# of test_evaluator.py's runs of Hub models, which fail offline before reading it),
# scripts/requests_caching.py (test_requests_caching.py: a Hub model and datasets) and the repository's
# tests/models/ and tests/scripts/, which are not in the sdist.
FIXTURES = Path(__file__).resolve().parent / "lm_eval_fixtures"
NETWORK = re.compile(r"offline|OfflineModeIsEnabled|LocalEntryNotFound|ConnectionError|resolve host|"
                     r"couldn't reach|cannot find the requested files|not found in cache", re.IGNORECASE)
EXCEPTION = re.compile(r"^E\s+([\w.]*(?:Error|Exception|Exit|Warning)\b.*)")
RANK = {"error": 3, "failed": 2, "skipped": 1, "passed": 0}


def reason(message: str) -> str:
    """The line that says what went wrong: the last exception pytest printed, else the first line."""
    found = [m[1] for line in message.splitlines() if (m := EXCEPTION.match(line))]
    return found[-1] if found else (message.strip().splitlines() or [""])[0]


def sh(cmd: list, check: bool = True, **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run(cmd, check=check, **kw)


def pip_env() -> dict:
    env = {**os.environ, "PIP_CONSTRAINT": str(LOCK)}
    env.setdefault("PIP_FIND_LINKS", "https://download.pytorch.org/whl/cpu/torch/")  # torch==2.13.0+cpu
    return env


def sources(cache: Path) -> Path:
    """lm-eval's sdist, unpacked once."""
    src = cache / f"lm_eval-{LM_EVAL}"
    if not (src / "tests").is_dir():
        sh([sys.executable, "-m", "pip", "download", f"lm_eval=={LM_EVAL}", "--no-deps", "--no-binary",
            ":all:", "-d", cache], env={**os.environ, "PIP_CONSTRAINT": ""})
        with tarfile.open(cache / f"lm_eval-{LM_EVAL}.tar.gz") as tar:
            tar.extractall(cache, filter="data")
    return src


def venv(cache: Path, name: str, rebuild: bool) -> Path:
    """A clean virtualenv with lm-eval, its test extras and the pack's dependencies at the lock's
    versions; rebuilt when the lock, the pack's dependencies or the Python version change."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = [f"lm_eval[{EXTRAS}]=={LM_EVAL}", *deps]
    stamp = hashlib.sha256(json.dumps([LOCK.read_text(), spec, sys.version]).encode()).hexdigest()
    path = cache / f"venv-{name}"
    if rebuild or not (path / ".stamp").is_file() or (path / ".stamp").read_text() != stamp:
        shutil.rmtree(path, ignore_errors=True)
        sh([sys.executable, "-m", "venv", path])
        sh([path / "bin" / "python", "-m", "pip", "install", "-q", *spec], env=pip_env())
        (path / ".stamp").write_text(stamp)
    return path


def install_pack(cache: Path, env_b: Path) -> None:
    """The pack's wheel from this checkout, rebuilt and reinstalled on every run."""
    wheels = cache / "wheel"
    shutil.rmtree(wheels, ignore_errors=True)
    sh([env_b / "bin" / "python", "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, ROOT], env=pip_env())
    sh([env_b / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
        *wheels.glob("*.whl")], env=pip_env())


def check_pack(path: Path, env: dict, installed: bool) -> None:
    """A must not see the pack; in B, importing lm_eval must start the hook without errors."""
    probe = "import sys, lm_eval.tasks; print(any(m.startswith('qa_tasks') for m in sys.modules))"
    out = subprocess.run([path / "bin" / "python", "-c", probe], check=False, env=env, cwd=path,
                         capture_output=True, text=True)
    if out.returncode or out.stdout.strip() != str(installed) or "Error processing line" in out.stderr:
        sys.exit(f"{path.name}: expected the pack's hook {'active' if installed else 'absent'}:\n"
                 f"{out.stdout}{out.stderr}")


def run_suite(src: Path, path: Path, work: Path, select: list[str], jobs: int, env: dict) -> dict:
    """lm-eval's tests in one environment: ``{test id: (outcome, message)}``. The folder they run from
    has the tests beside a link to the installed lm_eval (test_filters.py reads lm_eval/tasks from
    there), so that the package under test is the installed one, not the sdist's copy."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src / "tests", work / "tests")
    shutil.copytree(FIXTURES, work / "tests", dirs_exist_ok=True)
    shutil.copy(src / "pyproject.toml", work)
    site = next((path / "lib").glob("python3.*/site-packages"))
    (work / "lm_eval").symlink_to(site / "lm_eval")
    xml = work / "junit.xml"
    cmd = [path / "bin" / "python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", str(jobs),
           "--dist", "loadfile", f"--junitxml={xml}", *(select or ["tests"])]
    sh(cmd, check=False, cwd=work, env=env, stdout=subprocess.DEVNULL)
    if not xml.is_file():
        sys.exit(f"{path.name}: pytest wrote no {xml}")
    results: dict = {}
    for case in ET.parse(xml).iter("testcase"):
        parts, name = case.get("classname", "").split("."), case.get("name", "")
        split = next((i for i, p in enumerate(parts) if p[:1].isupper()), len(parts))
        test_id = ("/".join(parts[:split]) + ".py::" + "::".join([*parts[split:], name]) if parts[0]
                   else name.replace(".", "/") + ".py")  # a file that did not collect
        outcome, message = "passed", ""
        for child in case:
            kind = {"failure": "failed", "error": "error", "skipped": "skipped"}.get(child.tag)
            if kind and RANK[kind] > RANK[outcome]:
                outcome, message = kind, f"{child.get('message', '')}\n{child.text or ''}".strip()
        if test_id not in results or RANK[outcome] > RANK[results[test_id][0]]:
            results[test_id] = (outcome, message)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--select", nargs="+", default=[], metavar="TEST",
                        help="test files or ids of lm-eval's suite (e.g. test_task_manager.py); default all")
    parser.add_argument("--jobs", type=int, default=2, help="pytest-xdist workers per run (default 2)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "qa-pack-lm-eval-suite")
    parser.add_argument("--out", type=Path, help="JSON summary (default CACHE/summary.json)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild both virtualenvs")
    args = parser.parse_args()
    (cache := args.cache.expanduser().resolve()).mkdir(parents=True, exist_ok=True)
    select = [s if s.startswith("tests/") else f"tests/{s}" for s in args.select]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QA_PACK_DISABLE_HOOK")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", QA_PACK_DATA_DIR=os.environ.get("QA_PACK_DATA_DIR")
               or str(ROOT.parent / "shared" / "data"))

    src = sources(cache)
    envs = {"A": venv(cache, "A", args.rebuild), "B": venv(cache, "B", args.rebuild)}
    install_pack(cache, envs["B"])
    results, seconds = {}, {}
    for name, path in envs.items():
        check_pack(path, env, installed=name == "B")
        start = time.monotonic()
        results[name] = run_suite(src, path, cache / f"run-{name}", select, args.jobs, env)
        seconds[name] = round(time.monotonic() - start, 1)

    ids = sorted(results["A"].keys() | results["B"].keys())
    a, b = ({i: r.get(i, ("absent", "")) for i in ids} for r in (results["A"], results["B"]))
    differ = [i for i in ids if a[i][0] != b[i][0]]
    both_bad = [i for i in ids if i not in differ and a[i][0] in ("failed", "error")]
    network = [i for i in both_bad if NETWORK.search(a[i][1])]
    counts = {n: Counter(o for o, _ in r.values()) for n, r in results.items()}
    print(f"\n{'':10}{'A (no pack)':>12}{'B (pack)':>12}")
    for outcome in RANK:
        print(f"{outcome:10}{counts['A'][outcome]:>12}{counts['B'][outcome]:>12}")
    print(f"{'seconds':10}{seconds['A']:>12}{seconds['B']:>12}")
    print(f"\nfailed or error in both ({len(network)} of {len(both_bad)} offline/network):")
    for i in both_bad:
        print(f"  {i[:110]}  {reason(a[i][1])[:100]}")
    print(f"\ntests run: {len(ids)}   same outcome: {len(ids) - len(differ)}   different: {len(differ)}")
    for i in differ:
        print(f"  {i}: {a[i][0]} -> {b[i][0]}  {reason(b[i][1])[:200]}")
    summary = {
        "lm_eval": LM_EVAL, "select": select, "jobs": args.jobs, "seconds": seconds, "run": len(ids),
        "same": len(ids) - len(differ), "counts": {n: dict(c) for n, c in counts.items()},
        "different": [{"id": i, "A": a[i][0], "B": b[i][0], "A_message": a[i][1], "B_message": b[i][1]}
                      for i in differ],
        "failed_in_both": [{"id": i, "A": a[i][0], "B": b[i][0], "network": i in network,
                            "reason": reason(a[i][1])} for i in both_bad],
    }
    (out := args.out or cache / "summary.json").parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nsummary: {out}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
