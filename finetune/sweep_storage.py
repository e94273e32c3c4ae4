"""Where a sweep's study lives, chosen by one ``--storage`` value:

- none: ``sqlite:///D/study.db`` (Optuna's ``RDBStorage``), the workers of one output folder;
- ``journal:PATH``: Optuna's ``JournalStorage`` on a file, for workers on one host with no server;
- an RDB URL (``postgresql://user:pass@host/db``, ``mysql://...``): workers on several machines.

RDB studies record a heartbeat per running trial, so a trial whose worker was killed outright is failed
(and re-run) once it is ``grace`` seconds old. A journal file has no heartbeat; there a running trial
records its worker (host and pid), and a trial whose worker process is gone is failed instead.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from qa_tasks.errors import QAPackError

__all__ = ["JOURNAL", "Storage", "fail_orphaned_trials", "open_storage", "worker_id"]

JOURNAL = "journal:"


@dataclass
class Storage:
    storage: object  # an Optuna storage
    label: str  # the URL with its password hidden, for messages and sweep.json
    heartbeat: bool  # trials of killed workers go stale by heartbeat (RDB), else by worker_id (journal)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _journal(path_text: str) -> Storage:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if not path_text:
        raise QAPackError("--storage journal:PATH needs a file path, e.g. journal:sweeps/study.log")
    path = Path(path_text).expanduser().resolve()
    if not path.parent.is_dir():
        raise QAPackError(f"--storage {JOURNAL}{path_text}: folder {path.parent} does not exist; create it or "
                          "name a file in an existing folder")
    if path.is_dir():
        raise QAPackError(f"--storage {JOURNAL}{path_text} is a folder; name a file, e.g. {path / 'study.log'}")
    try:
        return Storage(JournalStorage(JournalFileBackend(str(path))), f"{JOURNAL}{path}", heartbeat=False)
    except OSError as e:
        raise QAPackError(f"--storage {JOURNAL}{path_text}: cannot open the journal ({e.strerror})") from None


def _rdb(url: str, heartbeat_s: int) -> Storage:
    import sqlalchemy
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage

    scheme = url.split("://")[0]
    try:
        engine_url = sqlalchemy.engine.make_url(url)
        sqlalchemy.create_engine(engine_url)  # imports the driver; connects to nothing yet
    except ImportError as e:
        raise QAPackError(f"--storage {scheme}://...: its database driver is not installed ({e}); install it "
                          "(e.g. pip install 'psycopg[binary]' or mysqlclient) or drop --storage for the SQLite "
                          "file in the output folder") from None
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError) as e:
        raise QAPackError(f"--storage {url!r} is not a database URL Optuna can use ({str(e).splitlines()[0]}); "
                          "e.g. postgresql://user:pass@host/db, sqlite:///path/study.db or journal:PATH") from None
    if engine_url.get_backend_name() == "sqlite" and engine_url.database in (None, "", ":memory:"):
        # the study would vanish with this process: no resume, no other worker, no leaderboard
        raise QAPackError(f"--storage {url!r} keeps the study in memory only; name a file, e.g. "
                          "sqlite:///sweeps/study.db, or drop --storage for D/study.db")
    label = engine_url.render_as_string(hide_password=True)
    warnings.filterwarnings("ignore", category=ExperimentalWarning)  # heartbeat_interval: stable since Optuna 2
    for attempt in range(5):
        try:
            storage = RDBStorage(url, heartbeat_interval=heartbeat_s, grace_period=4 * heartbeat_s,
                                 engine_kwargs={"pool_pre_ping": True})
            return Storage(storage, label, heartbeat=True)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # workers started together on a new database race to create its tables: the other one won
            if attempt == 4:
                raise
            time.sleep(1)
        except sqlalchemy.exc.SQLAlchemyError as e:  # an unreachable server, wrong credentials
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:160]
            raise QAPackError(f"--storage {label}: cannot open the study database ({reason}); check that the "
                              "server runs and the URL's host, port, user and database") from None
    raise AssertionError("unreachable")


def open_storage(value: str | None, out: Path, heartbeat_s: int) -> Storage:
    """The storage ``--storage`` names (``None``: the SQLite file in the output folder)."""
    if value is not None and value.startswith(JOURNAL):
        return _journal(value[len(JOURNAL):])
    return _rdb(value or f"sqlite:///{out.resolve() / 'study.db'}", heartbeat_s)


def fail_orphaned_trials(study, storage: Storage) -> None:
    """Fail the running trials whose worker is gone, so that they are re-run: by Optuna's heartbeat on an
    RDB storage; on a journal, the trials this host's workers ran whose process no longer exists."""
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    if storage.heartbeat:
        fail_stale_trials(study)
        return
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner, _, pid = str(t.system_attrs.get("worker", "")).rpartition(":")
        if owner == host and pid.isdigit() and not _alive(int(pid)):
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
