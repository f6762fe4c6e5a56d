"""The sweep store: one row per trial, keyed by the trial's config hash, in an SQL database.

SQLite (a file in the sweep folder) by default; any SQLAlchemy URL (e.g. ``postgresql://…``) lets
several machines share one sweep. Every change is one transaction, and a trial moves
pending → running → (ok | diverged | failed | oom) only through conditional updates, so two
workers can never both run or record the same trial. Rows read back as :class:`~lorabench.records.TrialRow`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import ConfigError
from ..records import FINISHED, Status, TrialRow
from .space import TrialSpec

_meta = sa.MetaData()
trials = sa.Table(
    "trials", _meta,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("grp", sa.Text, nullable=False),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("lr", sa.Float, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("axes", sa.Text, nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default=Status.PENDING.value),
    sa.Column("owner", sa.String(128)),
    sa.Column("heartbeat", sa.Float),
    sa.Column("started", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("step", sa.Integer, default=0),
    sa.Column("attempts", sa.Integer, default=0),
    sa.Column("result", sa.Text),
    sa.Column("error", sa.Text),
)
meta = sa.Table("meta", _meta, sa.Column("name", sa.String(64), primary_key=True), sa.Column("value", sa.Text))


def default_url(sweep_dir: str | Path) -> str:
    return f"sqlite:///{Path(sweep_dir).resolve() / 'sweep.db'}"


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs here; a zombie (killed, not yet reaped) is not alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):  # no /proc (not Linux): trust the signal
        return True
    return state not in ("Z", "X")


RETRIES = 5  # a race lost to another process starting the same sweep is retried this many times


def masked(url: str) -> str:
    """``url`` with any password hidden, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


LEASE_S = 300.0  # a running trial without a heartbeat for this long is taken as abandoned


def worker_gone(owner: str | None, heartbeat: float | None, lease_s: float = LEASE_S) -> bool:
    """Whether a running trial's worker is gone: its process is dead on this host, or its heartbeat is stale."""
    h, _, pid = (owner or ":").rpartition(":")
    dead_here = h == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))
    return dead_here or (heartbeat or 0) < time.time() - lease_s


def _starting(e: Exception) -> bool:
    """A store file whose tables its sweep is still creating: read as empty, not as an error."""
    return "no such table" in str(e)


class Store:
    """The trial table of one sweep. ``read_only``: for status, best and report, which only read (an SQLite
    store on a read-only file system still opens)."""

    def __init__(self, url: str, read_only: bool = False) -> None:
        self.url = url
        sqlite = url.startswith("sqlite")
        try:
            if sqlite and read_only:
                self.engine = self._read_only(url.removeprefix("sqlite:///"))
            else:
                self.engine = sa.create_engine(url, connect_args={"timeout": 60} if sqlite else {}, future=True)
                self._create(sqlite)
        except (sa.exc.ArgumentError, sa.exc.DBAPIError, ModuleNotFoundError) as e:
            raise ConfigError(f"store {masked(url)}: cannot be opened ({str(e).splitlines()[0]}); check the URL, "
                              "the server and its credentials (a damaged sweep.db: lorabench sweep --rebuild-store "
                              "recovers it from the trial folders into a new one)") from None

    def _read_only(self, path: str) -> sa.Engine:
        """An SQLite engine that never writes; on a read-only file system (where WAL mode cannot create its shared
        memory file) the database is opened as immutable, which is safe there: nothing can write it."""
        engine = sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", future=True)
        try:
            with engine.connect() as c:
                c.execute(sa.select(trials.c.key).limit(1)).all()
            return engine
        except sa.exc.OperationalError:
            engine.dispose()
            if not Path(path).is_file():
                raise
        return sa.create_engine(f"sqlite:///file:{path}?immutable=1&uri=true", future=True)

    def _create(self, sqlite: bool) -> None:
        """Tables (and SQLite's WAL mode), idempotent when several processes start the same sweep at once."""
        for attempt in range(RETRIES):
            try:
                if sqlite:
                    with self.engine.begin() as c:
                        c.exec_driver_sql("PRAGMA journal_mode=WAL")
                _meta.create_all(self.engine)
                return
            except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError):
                if attempt == RETRIES - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))  # the other process created them meanwhile, or held the lock

    def _insert(self, table: sa.Table) -> Any:
        """An INSERT that can skip or update on a key conflict (SQLite and PostgreSQL)."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def set_meta(self, name: str, value: Any) -> None:
        stmt = self._insert(meta).values(name=name, value=json.dumps(value))
        with self.engine.begin() as c:
            c.execute(stmt.on_conflict_do_update(index_elements=[meta.c.name], set_={"value": stmt.excluded.value}))

    def get_meta(self, name: str) -> Any:
        try:
            with self.engine.connect() as c:
                v = c.execute(sa.select(meta.c.value).where(meta.c.name == name)).scalar()
        except sa.exc.OperationalError as e:
            if _starting(e):
                return None
            raise
        return None if v is None else json.loads(v)

    def add(self, specs: list[TrialSpec]) -> int:
        """Insert the trials not yet known (a trial another process inserted meanwhile is skipped); returns how
        many were new."""
        if not specs:
            return 0
        rows = [{"key": s.key, "grp": s.group, "method": s.method, "lr": s.lr, "seed": s.seed,
                 "axes": json.dumps(s.axes), "config": json.dumps(s.config), "status": Status.PENDING.value,
                 "step": 0, "attempts": 0} for s in specs]
        with self.engine.begin() as c:
            r = c.execute(self._insert(trials).on_conflict_do_nothing(index_elements=[trials.c.key]), rows)
        return max(0, r.rowcount)

    def claim(self, key: str, owner: str) -> bool:
        now = time.time()
        with self.engine.begin() as c:
            r = c.execute(sa.update(trials).where(trials.c.key == key, trials.c.status == Status.PENDING.value).values(
                status=Status.RUNNING.value, owner=owner, heartbeat=now, started=now, step=0,
                attempts=trials.c.attempts + 1))
        return r.rowcount == 1

    def beat(self, key: str, owner: str, step: int) -> None:
        with self.engine.begin() as c:
            c.execute(sa.update(trials).where(trials.c.key == key, trials.c.owner == owner,
                                              trials.c.status == Status.RUNNING.value).values(
                heartbeat=time.time(), step=step))

    def finish(self, key: str, owner: str, status: Status, result: dict[str, Any] | None, error: str | None) -> bool:
        status = Status(status)
        assert status in FINISHED
        with self.engine.begin() as c:
            r = c.execute(sa.update(trials).where(trials.c.key == key, trials.c.owner == owner,
                                                  trials.c.status == Status.RUNNING.value).values(
                status=status.value, finished=time.time(), result=json.dumps(result) if result else None,
                error=error))
        return r.rowcount == 1

    def adopt(self, key: str, result: dict[str, Any]) -> bool:
        """Record a pending trial as finished with ``result``, a run folder's ``result.json`` (no worker ran it)."""
        status = Status(result["status"])
        assert status in FINISHED
        with self.engine.begin() as c:
            r = c.execute(sa.update(trials).where(trials.c.key == key, trials.c.status == Status.PENDING.value).values(
                status=status.value, finished=time.time(), result=json.dumps(result), error=result.get("error")))
        return r.rowcount == 1

    def amend(self, key: str, result: dict[str, Any]) -> bool:
        """Replace the result of a trial that finished ok (the held-out pass adds its test figures)."""
        with self.engine.begin() as c:
            r = c.execute(sa.update(trials).where(trials.c.key == key, trials.c.status == Status.OK.value).values(
                result=json.dumps(result)))
        return r.rowcount == 1

    def retry(self, statuses: list[Status]) -> int:
        """Put the trials that finished with one of ``statuses`` back to pending (their attempt count kept)."""
        with self.engine.begin() as c:
            r = c.execute(sa.update(trials).where(trials.c.status.in_([s.value for s in statuses])).values(
                status=Status.PENDING.value, owner=None, result=None, error=None))
        return r.rowcount

    def release(self, keys: list[str], owner: str) -> None:
        """``owner`` stopped running ``keys`` (interrupted): back to pending, to rerun."""
        with self.engine.begin() as c:
            c.execute(sa.update(trials).where(trials.c.key.in_(keys), trials.c.owner == owner,
                                              trials.c.status == Status.RUNNING.value).values(
                status=Status.PENDING.value, owner=None))

    def reclaim(self, lease_s: float = LEASE_S) -> int:
        """Return to pending the running trials whose worker is gone: a dead process on this host,
        or no heartbeat for ``lease_s`` seconds elsewhere."""
        with self.engine.connect() as c:
            stale = [(key, owner) for key, owner, beat in c.execute(
                sa.select(trials.c.key, trials.c.owner, trials.c.heartbeat).where(trials.c.status == Status.RUNNING.value))
                if worker_gone(owner, beat, lease_s)]
        with self.engine.begin() as c:
            for key, owner in stale:
                c.execute(sa.update(trials).where(trials.c.key == key, trials.c.owner == owner,
                                                  trials.c.status == Status.RUNNING.value).values(
                    status=Status.PENDING.value, owner=None))
        return len(stale)

    def rows(self) -> list[TrialRow]:
        try:
            with self.engine.connect() as c:
                raw = [dict(r._mapping) for r in c.execute(sa.select(trials).order_by(trials.c.grp, trials.c.lr,
                                                                                       trials.c.seed))]
        except sa.exc.OperationalError as e:
            if _starting(e):
                return []
            raise
        out = []
        for r in raw:
            r.update(axes=json.loads(r["axes"]), config=json.loads(r["config"]), status=Status(r["status"]),
                     result=json.loads(r["result"]) if r["result"] else None)
            out.append(TrialRow(**r))  # type: ignore[typeddict-item]
        return out

    def close(self) -> None:
        self.engine.dispose()
