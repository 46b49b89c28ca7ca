"""The ZAP API client of the `zap` engine: zapv2's API classes over a transport an unattended recovery can use.

zapv2's own client, `zapv2.ZAPv2` (PyPI `zaproxy`), sends every call through `requests` with no timeout (a hung
daemon would hang the run), addressed to http://zap/ through ZAP as a proxy (which an operator's proxy
settings, or Windows' "bypass local addresses", can divert), and has no option to change either: no timeout,
and a new `requests.Session` made inside each call, so there is no session to configure or mount an adapter
on. Its API classes (`zapv2.core.core`, `zapv2.spider.spider`, ...) build each call (path and parameters) and
hand it to the client object they are constructed with; `ZapClient` is that object, instead of a ZAPv2.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from drivers.base import quoted
from drivers.zap import USER_AGENT, ZapApiError, ZapError, ZapNotAnswering, ZapUnreachable


class ZapClient:
    """zapv2's `core`, `spider` and `pscan` APIs, each call sent straight to the daemon.

    A call goes to the daemon's own address (which ZAP serves the API on too), never through a proxy, with a
    timeout (`timeout_s`, which the caller may change between calls), the key only in the X-ZAP-API-Key header,
    and ZAP's API errors raised (zapv2 would return the error code as a value).
    """

    MAX_RESPONSE = 256 * 1024 * 1024
    # What zapv2's API classes read from their client: the URL prefixes of the calls, and the two methods below.
    base = "http://zap/JSON/"
    base_other = "http://zap/OTHER/"

    def __init__(self, api_url: str, api_key: str, timeout_s: float) -> None:
        # Imported when the zap engine runs: `requests` (which zapv2 imports) stays out of pytest's start-up.
        from zapv2.core import core
        from zapv2.pscan import pscan
        from zapv2.spider import spider

        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ZapError(f"[zap] api_url: expected an http(s) URL, got {quoted(api_url)}")
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s
        self._parts = parts
        self._api_key = api_key
        self.calls: list[str] = []  # the API paths called, in order (evidence and tests)
        self.core: Any = core(self)
        self.spider: Any = spider(self)
        self.pscan: Any = pscan(self)

    def _request(
        self, url: str, query: Mapping[str, Any] | None = None, method: str = "GET", body: Any = None
    ) -> Any:
        """A JSON view or action, as zapv2's API classes call it: ZAP's answer, decoded."""
        return json.loads(self._send(url, query, method, body))

    def _request_other(
        self, url: str, query: Mapping[str, Any] | None = None, method: str = "GET", body: Any = None
    ) -> str:
        """An OTHER call (the HTML report), as zapv2's API classes call it: ZAP's answer as text."""
        return self._send(url, query, method, body).decode("utf-8", "replace")

    def _send(self, url: str, query: Mapping[str, Any] | None, method: str, body: Any) -> bytes:
        """One API call: the body of ZAP's answer, or ZapUnreachable, ZapNotAnswering or ZapApiError."""
        if not url.startswith("http://zap/"):
            raise ValueError(f"not a ZAP API URL: {url}")  # as zapv2: the key only ever goes to the API
        path = url.removeprefix("http://zap")
        self.calls.append(path)
        params = urlencode({k: v for k, v in (query or {}).items() if v is not None}, doseq=True)
        target = self._parts.path.rstrip("/") + path + (f"?{params}" if params else "")
        headers = {"Accept": "application/json, text/html;q=0.9", "User-Agent": USER_AGENT}
        if self._api_key:
            headers["X-ZAP-API-Key"] = self._api_key
        data = urlencode(body).encode("ascii") if isinstance(body, Mapping) else body
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn_type = (
            http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_type(self._parts.hostname or "", self._parts.port, timeout=self.timeout_s)
        try:
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
            content = response.read(self.MAX_RESPONSE)
        except ConnectionRefusedError:
            raise ZapUnreachable(f"nothing answers at {self.api_url} (connection refused)") from None
        except TimeoutError:
            raise ZapNotAnswering(
                f"{self.api_url} accepted the connection but did not answer {path} within {self.timeout_s:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ZapUnreachable(f"cannot reach the ZAP API at {self.api_url}: {exc}") from None
        finally:
            conn.close()
        if response.status >= 400:
            raise self._api_error(path, response.status, content)
        return content

    def _api_error(self, path: str, status: int, content: bytes) -> ZapApiError:
        try:
            error = json.loads(content)
            code, message = str(error.get("code", "")), str(error.get("message", ""))
        except (ValueError, AttributeError):
            code, message = "", content[:200].decode("utf-8", "replace")
        if code == "bad_api_key":
            return ZapApiError(
                f"ZAP at {self.api_url} refused the API key ({code}: {message}): set [zap] api_key "
                '(usually "${ZAP_API_KEY}") to the key the daemon was started with (-config api.key=...)',
                code,
            )
        return ZapApiError(f"ZAP API {path} at {self.api_url}: HTTP {status} {code}: {message}".strip(), code)
