"""Store and sink URLs without passwords on the command line.

A URL given as ``--store postgresql://user:secret@host/db`` is visible to every user of the machine in
``ps`` and lands in shell history. Each URL option therefore has three sources, in this order:

1. the option itself (still accepted; a warning is printed when the URL carries a password);
2. ``--<name>-conn-id ID``: an Airflow connection (its ``url`` extra, else its URI, with Airflow's
   ``postgres://`` scheme mapped to SQLAlchemy's ``postgresql+psycopg://``); Airflow is imported only then;
3. an environment variable (``BATCHQ_STORE_URL``, ``BATCHQ_SINK_URL``, …).

:func:`add_url_option` declares an option; :func:`resolve_url_options` (called by ``batchq``'s main before
any command runs) fills in ``args.<dest>`` or stops with an error naming the three sources.
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlsplit

from batchq.errors import BatchqError

_OPTIONS = "_batchq_url_options"


def add_url_option(p: argparse.ArgumentParser, name: str, *, env: str, help: str, required: bool = True, dest: str | None = None) -> None:
    """Declare ``--<name>`` and ``--<name>-conn-id``, defaulting to environment variable ``env``.

    :param name: the option's name without dashes (``store``, ``sink``, ``sink-url``).
    :param env: the environment variable read when neither option is given.
    :param help: what the URL is.
    :param required: whether a command cannot run without it.
    :param dest: the ``args`` attribute (default from ``name``).
    """
    dest = dest or name.replace("-", "_")
    p.add_argument(f"--{name}", dest=dest, default=None, help=f"{help}. Default: env {env}, or --{name}-conn-id. A password on the command line is visible in ps")
    p.add_argument(f"--{name}-conn-id", dest=f"{dest}_conn_id", default=None, metavar="CONN_ID", help=f"Airflow connection holding the {name} URL (its 'url' extra, else its URI)")
    options = list(p.get_default(_OPTIONS) or [])
    options.append((name, dest, env, required))
    p.set_defaults(**{_OPTIONS: options})


def resolve_url_options(args: argparse.Namespace) -> None:
    """Fill every URL option of the parsed command from its option, connection or environment."""
    for name, dest, env, required in getattr(args, _OPTIONS, None) or []:
        value = getattr(args, dest, None)
        conn_id = getattr(args, f"{dest}_conn_id", None)
        if value and conn_id:
            raise BatchqError(f"--{name} and --{name}-conn-id are exclusive: give one")
        if value:
            warn_if_password(value, f"--{name}", env)
        elif conn_id:
            value = airflow_connection_url(conn_id)
        else:
            value = os.environ.get(env) or None
        if value is None and required:
            raise BatchqError(f"no {name} URL: set environment variable {env}, or give --{name}-conn-id (an Airflow connection) or --{name}")
        setattr(args, dest, value)


def warn_if_password(url: str, option: str, env: str) -> bool:
    """Print a warning when ``url`` (given on the command line) carries a password; True if it did."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return False
    if not password:
        return False
    print(f"batchq: warning: the URL given with {option} carries a password, visible to every user in ps and in shell "
          f"history; put it in environment variable {env} or an Airflow connection ({option}-conn-id) instead", file=sys.stderr)
    return True


def airflow_connection_url(conn_id: str) -> str:
    """The URL an Airflow connection holds: its ``url`` extra, else its URI (``postgres`` scheme mapped to
    SQLAlchemy's ``postgresql+psycopg``).

    Read with ``airflow connections get ID -o json`` in a subprocess: the CLI never imports Airflow (it
    runs in Airflow-free installs), any secrets backend Airflow is configured with answers, and the
    password travels through a pipe, never an argument list.
    """
    import json
    import shutil
    import subprocess
    from pathlib import Path

    airflow = shutil.which("airflow") or str(Path(sys.executable).with_name("airflow"))
    if not Path(airflow).exists():
        raise BatchqError(f"connection {conn_id!r}: the airflow command is not installed here; use the environment variable instead")
    try:
        proc = subprocess.run([airflow, "connections", "get", conn_id, "-o", "json"], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
        found = json.loads(proc.stdout[proc.stdout.index("["):]) if proc.returncode == 0 and "[" in proc.stdout else []
    except (subprocess.TimeoutExpired, ValueError):
        found = []
    if not found:
        raise BatchqError(f"Airflow connection {conn_id!r} not readable (airflow connections get {conn_id})")
    conn = found[0]
    extra = conn.get("extra_dejson") if isinstance(conn.get("extra_dejson"), dict) else {}
    if extra.get("url"):
        return str(extra["url"])
    uri = str(conn.get("get_uri") or "")
    scheme, _, rest = uri.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return uri
