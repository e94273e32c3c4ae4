"""Data resolution shared by every task family.

``QA_PACK_DATA_DIR`` set: files are read from that folder, laid out like the project's shared data
(``recipe_mpr/500QA.json``, ``squad/dev-v1.1.json``, ``math/gsm8k_test.jsonl`` ...).
Unset: the canonical source (Hugging Face Hub ids, or a GitHub raw URL pinned to a commit with a
sha256 check, cached under ``~/.cache/lm_eval_qa_pack``). Any failure becomes one ``QAPackError``
line naming the variable and the file expected.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

from qa_tasks.errors import QAPackError
from qa_tasks.files import atomic_write

__all__ = [
    "DATA_ENV",
    "EXPECTED_FILES",
    "data_dir",
    "fetch_pinned",
    "int_option",
    "load_hub",
    "local_or_none",
    "read_json",
    "read_jsonl",
]

DATA_ENV = "QA_PACK_DATA_DIR"
EXPECTED_FILES = (
    "recipe_mpr/500QA.json, recipe_mpr/folds/5_fold_inds.json, squad/dev-v1.1.json, "
    "squad/train-v1.1.json, math/math500_test.jsonl, math/gsm8k_test.jsonl, math/gsm8k_train.jsonl"
)
CACHE_DIR = Path(os.environ.get("QA_PACK_CACHE", Path.home() / ".cache" / "lm_eval_qa_pack"))


def data_dir() -> Path | None:
    """The local data folder named by ``QA_PACK_DATA_DIR``, or None when unset."""
    value = os.environ.get(DATA_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise QAPackError(
            f"{DATA_ENV}={value} is not a folder; point it at a folder laid out like shared/data "
            f"({EXPECTED_FILES}) or unset it to use the canonical sources"
        )
    return path


def _local_file(rel: str) -> Path:
    root = data_dir()
    assert root is not None
    path = root / rel
    if not path.is_file():
        raise QAPackError(
            f"{DATA_ENV}={root}: expected file {path} is missing; copy or link it there "
            f"(layout: {EXPECTED_FILES}) or unset {DATA_ENV} to use the canonical source"
        )
    return path


def _bad_file(path: Path, what: str) -> QAPackError:
    return QAPackError(f"{path} is malformed ({what}); replace it with the original file (check {DATA_ENV})")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad_file(path, f"not valid JSON: {e}") from None


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise _bad_file(path, f"line {lineno} is not valid JSON: {e}") from None
            if not isinstance(row, dict):
                raise _bad_file(path, f"line {lineno} is not a JSON object")
            rows.append(row)
    return rows


def int_option(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """A task option given as an integer (or its decimal string, as ``--metadata key=value`` passes it),
    within ``low..high``; anything else (``"x"``, ``1.7``, ``True``) is one QAPackError line."""
    text = value.strip() if isinstance(value, str) else None
    ok = (isinstance(value, int) and not isinstance(value, bool)) or (text is not None and text.lstrip("-").isdigit())
    number = int(value) if ok else None
    if number is None or (low is not None and number < low) or (high is not None and number > high):
        bounds = f"{low}..{high}" if low is not None and high is not None else (
            f">= {low}" if low is not None else f"<= {high}" if high is not None else "any")
        raise QAPackError(f"{name}={value!r} is not valid; use an integer ({bounds}), e.g. "
                          f"--metadata '{{\"{name}\": {low if low is not None else 0}}}'")
    return number


def local_or_none(rel: str) -> Path | None:
    """The local copy of ``rel`` when ``QA_PACK_DATA_DIR`` is set (error if missing), else None."""
    return _local_file(rel) if data_dir() is not None else None


def fetch_pinned(rel: str, url: str, sha256: str) -> Path:
    """``rel`` from ``QA_PACK_DATA_DIR``, else ``url`` downloaded once, sha256-checked and cached."""
    local = local_or_none(rel)
    if local is not None:
        return local
    cached = CACHE_DIR / sha256[:16] / Path(rel).name
    if cached.is_file() and hashlib.sha256(cached.read_bytes()).hexdigest() == sha256:
        return cached
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            payload = response.read()
    except OSError as e:
        raise QAPackError(
            f"cannot download {url} ({e}); set {DATA_ENV} to a folder holding {rel} "
            f"(layout: {EXPECTED_FILES})"
        ) from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise QAPackError(f"{url} has sha256 {digest}, expected {sha256}; set {DATA_ENV} to a folder holding {rel}")
    return atomic_write(cached, payload)


def load_hub(hub_id: str, split: str, rel: str, name: str | None = None) -> list[dict]:
    """Rows of a Hub dataset split; errors name ``QA_PACK_DATA_DIR`` and the local file to use instead."""
    try:
        import datasets

        return list(datasets.load_dataset(hub_id, name, split=split))
    except Exception as e:  # noqa: BLE001  (any hub, network or cache failure means the same to the user)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise QAPackError(
            f"cannot load {hub_id} ({reason}); set {DATA_ENV} to a folder holding {rel} "
            f"(layout: {EXPECTED_FILES})"
        ) from None
