"""Which sink an Airflow connection names: any SQL connection through its own hook, or an HTTP endpoint.

* A connection whose hook is a :class:`~airflow.providers.common.sql.hooks.sql.DbApiHook` (PostgreSQL,
  SQLite, MySQL/MariaDB, Snowflake, MSSQL, … — whatever provider is installed) is a SQL sink: its URL comes
  from the hook itself (:attr:`DbApiHook.sqlalchemy_url`, else :meth:`DbApiHook.get_uri`, the URL behind
  :meth:`DbApiHook.get_sqlalchemy_engine`), so batchq has no per-database mapping of its own. The store
  must support the dialect (:mod:`batchq.store`); an unsupported one fails naming it.
* ``http``/``https`` connections (the HTTP provider's) and ``batchq_http`` ones (:class:`BatchqHttpSinkHook`,
  this provider's own type, with its form fields) are HTTP sinks; credentials travel as headers.
* The extra ``sqlalchemy_url`` (or ``url``) overrides both, for a database whose provider is not installed.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import BaseHook

from batchq.airflow.sinks_form import HTTP_SINK_UI_BEHAVIOUR

#: Connection types that name an HTTP sink.
HTTP_CONN_TYPES = ("http", "https", "batchq_http")

#: libpq parameters a postgres connection keeps from its extra (TLS and friends). The PostgreSQL hook's
#: ``sqlalchemy_url`` carries only its ``sqlalchemy_query`` extra, so without this a connection with
#: ``sslmode=verify-full`` would silently connect in clear text (issue 8).
_PG_EXTRA_PARAMS = (
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword", "sslcompression", "sslsni",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "requiressl", "gssencmode", "channel_binding",
    "target_session_attrs", "application_name", "connect_timeout", "options", "keepalives", "keepalives_idle",
)

class BatchqHttpSinkHook(BaseHook):
    """The real-time system's HTTP endpoint as an Airflow connection (type ``batchq_http``).

    Host, port and path (the *Path* field) make the URL (``https`` unless *Use HTTPS* is off); login and
    password are basic auth, a password alone or *Bearer token* a bearer token, *Extra headers* more
    headers. :class:`~batchq.airflow.operators.drain.ResultsDrainOperator` takes it as ``sink_conn_id``.

    :param sink_conn_id: the connection (default ``batchq_sink``).
    """

    conn_name_attr = "sink_conn_id"
    default_conn_name = "batchq_sink"
    conn_type = "batchq_http"
    hook_name = "batchq HTTP sink"

    def __init__(self, sink_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sink_conn_id = sink_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The form's field behaviour (for Airflow releases that ask the hook rather than the provider info)."""
        b = HTTP_SINK_UI_BEHAVIOUR
        return {"hidden_fields": b["hidden-fields"], "relabeling": b["relabeling"], "placeholders": b["placeholders"]}

    def get_conn(self) -> tuple[str, dict[str, str]]:
        """``(url, headers)`` of the sink."""
        conn = self.get_connection(self.sink_conn_id)
        return sink_target_from_connection(conn), sink_headers_from_connection(conn)


def _extra(conn: Any) -> dict[str, Any]:
    return dict(getattr(conn, "extra_dejson", None) or {})


def _http_url(conn: Any) -> str:
    ctype = (conn.conn_type or "").lower()
    if ctype == "batchq_http":
        use_https = _extra(conn).get("use_https", True)
        scheme = "http" if str(use_https).lower() in ("false", "0", "no") else "https"
    else:
        scheme = ctype
    port = f":{conn.port}" if conn.port else ""
    path = (conn.schema or "").lstrip("/")
    return f"{scheme}://{conn.host}{port}/{path}"


def sql_url_from_hook(hook: Any, conn: Any) -> str:
    """The SQLAlchemy URL (with its password) of a DbApiHook's connection, as the hook builds it."""
    from sqlalchemy.engine import make_url

    try:
        url = hook.sqlalchemy_url
    except NotImplementedError:
        url = make_url(hook.get_uri())
    url = make_url(url) if isinstance(url, str) else url
    if url.get_backend_name() == "sqlite" and (url.database or "").startswith("//"):
        # SqliteHook.get_uri gives sqlite://///abs/path for a path in the schema field: the same file, but
        # one spelling keeps the sink's description (and the ledger's store identity) stable.
        url = url.set(database="/" + url.database.lstrip("/"))
    return _with_pg_params(url, conn).render_as_string(hide_password=False)


def _sqlalchemy_driver_url(conn: Any) -> str | None:
    """A connection whose type is itself a SQLAlchemy driver name (``AIRFLOW_CONN_X=postgresql+psycopg://…``
    gives conn_type ``postgresql+psycopg``, which no provider's hook claims): its fields as that URL."""
    from sqlalchemy.dialects import registry
    from sqlalchemy.engine import URL
    from sqlalchemy.exc import NoSuchModuleError

    ctype = conn.conn_type or ""
    try:
        registry.load(ctype.replace("+", "."))
    except (NoSuchModuleError, ImportError):
        return None
    url = URL.create(ctype, username=conn.login or None, password=conn.password or None, host=conn.host or None,
                     port=conn.port or None, database=conn.schema or None)
    return _with_pg_params(url, conn).render_as_string(hide_password=False)


def _with_pg_params(url: Any, conn: Any) -> Any:
    if url.get_backend_name() != "postgresql":
        return url
    extra = _extra(conn)
    keep = {k: str(extra[k]) for k in _PG_EXTRA_PARAMS if extra.get(k) not in (None, "") and k not in url.query}
    return url.update_query_dict(keep) if keep else url


def sink_target_from_connection(conn: Any) -> str:
    """A sink target string (SQLAlchemy URL or http(s) URL) from an Airflow connection (see the module).

    :raises ValueError: the connection's type is neither HTTP nor has a DbApiHook, naming the type.
    """
    extra = _extra(conn)
    for key in ("sqlalchemy_url", "url"):
        if extra.get(key):
            return str(extra[key])
    ctype = (conn.conn_type or "").lower()
    if ctype in HTTP_CONN_TYPES:
        return _http_url(conn)
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    try:
        hook = conn.get_hook()
    except Exception as exc:
        direct = _sqlalchemy_driver_url(conn)
        if direct is not None:
            return direct
        raise ValueError(
            f"connection {conn.conn_id!r}: no hook for conn_type {conn.conn_type!r} ({type(exc).__name__}): install its "
            "Airflow provider, or give the extra 'sqlalchemy_url'"
        ) from exc
    if not isinstance(hook, DbApiHook):
        raise ValueError(  # noqa: TRY004 - a connection of the wrong kind is a bad setting value
            f"connection {conn.conn_id!r}: conn_type {conn.conn_type!r} is neither a SQL connection (its hook "
            f"{type(hook).__name__} is no DbApiHook) nor http/https/batchq_http"
        )
    return sql_url_from_hook(hook, conn)


def sink_headers_from_connection(conn: Any) -> dict[str, str]:
    """Request headers for an HTTP sink from an Airflow connection: basic auth from login/password, a
    bearer token from the password (no login) or the extra ``token``, more headers from the extra
    ``headers`` (:func:`batchq.drain.http_sink.auth_headers`). Empty for SQL connections."""
    from batchq.drain.http_sink import auth_headers

    if (conn.conn_type or "").lower() not in HTTP_CONN_TYPES:
        return {}
    extra = _extra(conn)
    if isinstance(extra.get("headers"), str) and not extra["headers"].strip():
        extra.pop("headers")
    elif isinstance(extra.get("headers"), str):
        extra["headers"] = json.loads(extra["headers"])
    return auth_headers(conn.login or None, conn.password or None, extra)


def get_connection(conn_id: str) -> Any:
    """The Airflow connection ``conn_id`` (Task SDK inside a task, the metadata DB or secrets elsewhere)."""
    return BaseHook.get_connection(conn_id)
