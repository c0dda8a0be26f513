"""The security headers of every response of the plugin app (pages, JSON and errors alike).

Airflow 3.3's UI shows the Batch views in an iframe with ``sandbox="allow-scripts allow-same-origin
allow-forms allow-downloads"``: scripts *do* run there, with the Airflow UI's own origin. The pages need
no script at all, so the Content-Security-Policy allows none: an escaping slip in a template stays
text, never script on the Airflow UI. Styles are inline (one ``<style>`` block and ``style=""`` on
legend swatches), images only ``data:``; nothing is fetched from anywhere, no form posts anywhere, and
only Airflow's own pages (same origin) may frame the views.
"""

from __future__ import annotations

from typing import Any

#: No script, no fetch, no form target; inline styles and data: images only; framed only by Airflow.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; "
    "base-uri 'none'; form-action 'none'"
)
#: Sent on every response of the plugin app.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    # frame-ancestors for browsers that predate it: only Airflow's own UI (same origin) may frame us.
    ("x-frame-options", "SAMEORIGIN"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
)


class SecurityHeadersMiddleware:
    """ASGI middleware that sets :data:`SECURITY_HEADERS` on every HTTP response (replacing any value a
    route set), including 401/403/404/422 answers and errors.

    :param app: the ASGI app to wrap.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        names = {name.encode() for name, _ in SECURITY_HEADERS}

        async def send_with_headers(message: Any) -> None:
            if message.get("type") == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
