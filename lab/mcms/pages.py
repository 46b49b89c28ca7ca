"""HTML pages and the OpenAPI document of the portal.

Pages are built to pass axe-core (WCAG 2 A/AA and best practices) as they are: one h1 per page, landmarks,
labelled fields, a skip link, no inline styles or scripts (the CSP forbids them anyway). The release fault
``a11y-regression`` adds the three classic violations in one block, so a scan catches a real regression.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

CSRF_FIELD = "__RequestVerificationToken"


@dataclass(frozen=True)
class Page:
    title: str
    body: str


def layout(page: Page, *, version: str, user: str | None) -> str:
    account = (
        f'<li><a href="/logout">Sign out {escape(user)}</a></li>'
        if user
        else '<li><a href="/login">Sign in</a></li>'
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(page.title)} - MCMS Portal</title>
<link rel="stylesheet" href="/static/site.css">
<link rel="icon" href="/static/logo.svg" type="image/svg+xml">
</head>
<body>
<a class="skip-link" href="#main">Skip to main content</a>
<header class="site">
<p class="brand"><a href="/">MCMS Portal</a></p>
<nav aria-label="Main">
<ul>
<li><a href="/">Home</a></li>
<li><a href="/dashboard">Dashboard</a></li>
<li><a href="/items">Items</a></li>
<li><a href="/swagger/index.html">API</a></li>
{account}
</ul>
</nav>
</header>
<main id="main" tabindex="-1">
{page.body}
</main>
<footer>
<p>MCMS {escape(version)} &middot; internal network service</p>
</footer>
</body>
</html>
"""


def a11y_regression_block() -> str:
    """The markup of the a11y-regression fault: image without alt, unlabelled field, low-contrast text."""
    return """<div class="promo">
<img src="/static/logo.svg" width="48" height="48">
<p class="fault-low-contrast">New: the queue now processes items faster.</p>
<input type="text" name="promo-code">
</div>"""


def home(*, a11y_regression: bool) -> Page:
    extra = a11y_regression_block() if a11y_regression else ""
    return Page(
        "Home",
        f"""<h1>MCMS Portal</h1>
<p>The MCMS portal manages items that the worker service processes and publishes to the shared drive.</p>
<ul>
<li><a href="/login">Sign in</a> to see the dashboard.</li>
<li><a href="/items">Browse items</a> and their processing status.</li>
<li><a href="/swagger/index.html">Read the API documentation</a>.</li>
</ul>
{extra}""",
    )


def login(*, csrf: str, next_path: str, error: str | None) -> Page:
    alert = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return Page(
        "Sign in",
        f"""<h1>Sign in</h1>
{alert}
<form method="post" action="/login">
<input type="hidden" name="{CSRF_FIELD}" value="{escape(csrf)}">
<input type="hidden" name="next" value="{escape(next_path)}">
<label for="user">User name</label>
<input id="user" name="user" type="text" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>""",
    )


def dashboard(
    *,
    version: str,
    worker_status: str,
    queue_depth: int,
    sync_age: float | None,
    items_total: int,
    items_processed: int,
    a11y_regression: bool,
) -> Page:
    sync_text = "never" if sync_age is None else f"{sync_age:.1f} s ago"
    extra = a11y_regression_block() if a11y_regression else ""
    return Page(
        "Dashboard",
        f"""<h1>Dashboard</h1>
<dl class="figures">
<dt>Served version</dt><dd id="served-version">{escape(version)}</dd>
<dt>Worker status</dt><dd id="worker-status">{escape(worker_status)}</dd>
<dt>Queue depth</dt><dd id="queue-depth">{queue_depth}</dd>
<dt>Shared drive last sync</dt><dd id="sync-age">{escape(sync_text)}</dd>
<dt>Items processed</dt><dd id="items-processed">{items_processed} of {items_total}</dd>
</dl>
<p><a href="/items/new">Create an item</a></p>
{extra}""",
    )


def items(rows: list[tuple[int, str, str]]) -> Page:
    if rows:
        body = "\n".join(
            f'<tr><td>{item_id}</td><td class="item-name">{escape(name)}</td>'
            f'<td class="item-status status-{escape(status)}">{escape(status)}</td></tr>'
            for item_id, name, status in rows
        )
    else:
        body = '<tr><td colspan="3">No items yet.</td></tr>'
    return Page(
        "Items",
        f"""<h1>Items</h1>
<p><a href="/items/new">Create an item</a></p>
<table id="items-table">
<caption>Items and their processing status</caption>
<thead><tr><th scope="col">ID</th><th scope="col">Name</th><th scope="col">Status</th></tr></thead>
<tbody>
{body}
</tbody>
</table>""",
    )


def new_item(*, csrf: str, error: str | None, name: str = "") -> Page:
    alert = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return Page(
        "New item",
        f"""<h1>Create an item</h1>
{alert}
<form method="post" action="/items/new">
<input type="hidden" name="{CSRF_FIELD}" value="{escape(csrf)}">
<label for="name">Item name</label>
<input id="name" name="name" type="text" maxlength="100" required value="{escape(name)}">
<button type="submit">Create</button>
</form>""",
    )


def message(title: str, text: str) -> Page:
    return Page(
        title,
        f'<h1>{escape(title)}</h1>\n<p>{escape(text)}</p>\n<p><a href="/">Back to the home page</a></p>',
    )


def swagger_index(spec: dict[str, Any]) -> Page:
    rows = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            codes = ", ".join(sorted(op["responses"]))
            rows.append(
                f'<tr><td class="method">{escape(method.upper())}</td><td><code>{escape(path)}</code></td>'
                f"<td>{escape(op['summary'])}</td><td>{escape(codes)}</td></tr>"
            )
    info = spec["info"]
    return Page(
        "API documentation",
        f"""<h1>{escape(info["title"])} {escape(info["version"])}</h1>
<p>{escape(info["description"])} The machine-readable document is
<a href="/swagger/v1/swagger.json">swagger.json (OpenAPI {escape(spec["openapi"])})</a>.</p>
<table id="operations">
<caption>Operations</caption>
<thead><tr><th scope="col">Method</th><th scope="col">Path</th><th scope="col">Summary</th>
<th scope="col">Responses</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>""",
    )


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def _response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": _json(schema)}


def openapi(version: str) -> dict[str, Any]:
    status_values = ["Healthy", "Degraded", "Unhealthy"]
    timestamp = {"type": "string", "format": "date-time", "nullable": True}
    seconds = {"type": "number", "nullable": True}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "MCMS API",
            "version": version,
            "description": "Items, their processing by the worker service, and the health of the service.",
        },
        "servers": [{"url": "/"}],
        "paths": {
            "/api/items": {
                "get": {
                    "operationId": "listItems",
                    "summary": "List all items with their processing status",
                    "tags": ["items"],
                    "responses": {
                        "200": {
                            "description": "The items",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Item"},
                                    }
                                }
                            },
                        }
                    },
                },
                "post": {
                    "operationId": "createItem",
                    "summary": "Create an item and queue it for the worker",
                    "tags": ["items"],
                    "requestBody": {"required": True, "content": _json("ItemCreate")},
                    "responses": {
                        "201": _response("The created item, status queued", "Item"),
                        "400": _response("The body is not a valid item", "Error"),
                        "415": _response("The body is not JSON", "Error"),
                    },
                },
            },
            "/api/items/{id}": {
                "get": {
                    "operationId": "getItem",
                    "summary": "Read one item",
                    "tags": ["items"],
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "format": "int64"},
                        }
                    ],
                    "responses": {
                        "200": _response("The item", "Item"),
                        "404": _response("No such item", "Error"),
                    },
                }
            },
            "/api/status": {
                "get": {
                    "operationId": "getStatus",
                    "summary": "Served version, queue depth, worker heartbeat and shared drive sync",
                    "tags": ["service"],
                    "responses": {"200": _response("The service status", "Status")},
                }
            },
            "/health": {
                "get": {
                    "operationId": "getHealth",
                    "summary": "Health of the web, worker and shared drive components",
                    "tags": ["service"],
                    "responses": {
                        "200": _response("Healthy or Degraded", "Health"),
                        "503": _response("Unhealthy", "Health"),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "ItemCreate": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100}},
                },
                "Item": {
                    "type": "object",
                    "required": ["id", "name", "status", "created_at", "processed_at"],
                    "properties": {
                        "id": {"type": "integer", "format": "int64"},
                        "name": {"type": "string"},
                        "status": {"type": "string", "enum": ["queued", "processed"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "processed_at": timestamp,
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "WorkerComponent": {
                    "type": "object",
                    "required": ["status", "queue_depth", "last_heartbeat", "heartbeat_age_s"],
                    "properties": {
                        "status": {"type": "string", "enum": status_values},
                        "queue_depth": {"type": "integer"},
                        "last_heartbeat": timestamp,
                        "heartbeat_age_s": seconds,
                        "pid": {"type": "integer", "nullable": True},
                    },
                },
                "SharedDriveComponent": {
                    "type": "object",
                    "required": ["status", "last_sync", "sync_age_s"],
                    "properties": {
                        "status": {"type": "string", "enum": status_values},
                        "last_sync": timestamp,
                        "sync_age_s": seconds,
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "version", "components"],
                    "properties": {
                        "status": {"type": "string", "enum": status_values},
                        "version": {"type": "string"},
                        "components": {
                            "type": "object",
                            "required": ["web", "worker", "shared_drive"],
                            "properties": {
                                "web": {
                                    "type": "object",
                                    "required": ["status"],
                                    "properties": {"status": {"type": "string", "enum": status_values}},
                                },
                                "worker": {"$ref": "#/components/schemas/WorkerComponent"},
                                "shared_drive": {"$ref": "#/components/schemas/SharedDriveComponent"},
                            },
                        },
                    },
                },
                "Status": {
                    "type": "object",
                    "required": ["version", "queue_depth", "worker", "shared_drive"],
                    "properties": {
                        "version": {"type": "string"},
                        "node": {"type": "string"},
                        "queue_depth": {"type": "integer"},
                        "worker": {"$ref": "#/components/schemas/WorkerComponent"},
                        "shared_drive": {"$ref": "#/components/schemas/SharedDriveComponent"},
                    },
                },
            }
        },
    }
