"""Writing outputs so that an interrupted run never leaves a half-written file or folder behind.

Every output of the pack (results, manifests, leaderboards, plots, merged models, the tiny model) goes
through these: the data lands under a unique temporary name beside the target, then one rename puts it
in place, so a reader sees the old version or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_dir", "atomic_write", "checkpoint_step", "write_json"]

_STEP = re.compile(r"(?:checkpoint|step)-(\d+)")


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a unique temporary file beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, obj) -> Path:
    """``obj`` as indented JSON (anything else as its string), written atomically."""
    return atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; when the block ends normally it replaces ``out``.

    A block that raises leaves ``out`` as it was and removes the temporary folder; a block that removes
    the folder itself writes nothing.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not tmp.exists():
        return
    if out.is_dir():
        shutil.rmtree(out)
    os.replace(tmp, out)


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The training step a folder holds: ``checkpoint-40`` or ``step-40`` -> 40; anything else -> None."""
    match = _STEP.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None
