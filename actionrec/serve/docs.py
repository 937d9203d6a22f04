"""/docs: the API described from its OpenAPI schema in plain HTML, served by the package, so it works offline (FastAPI's
interactive Swagger UI is left out: it loads its script from a CDN)."""

from __future__ import annotations

from html import escape

STYLE = ("body{font:15px/1.5 system-ui,sans-serif;max-width:980px;margin:2rem auto;padding:0 1rem;color:#1d2430}"
         "h2{font-size:1rem;margin:1.4rem 0 .2rem}code{background:#f0f2f5;padding:0 .3rem;border-radius:3px}"
         ".m{display:inline-block;width:4.2rem;font-weight:700;color:#2f6db3}td,th{text-align:left;padding:.1rem .6rem}")


def _parameters(operation: dict) -> str:
    rows = [f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p.get('in', ''))}</td>"
            f"<td>{'required' if p.get('required') else ''}</td><td>{escape(p.get('description', ''))}</td></tr>"
            for p in operation.get("parameters", [])]
    body = operation.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        ref = content.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1] or "the file's bytes"
        rows.append(f"<tr><td>body</td><td>{escape(media)}</td><td></td><td>{escape(ref)}</td></tr>")
    return f"<table>{''.join(rows)}</table>" if rows else ""


def _schemas(schema: dict) -> str:
    out = []
    for name, model in schema.get("components", {}).get("schemas", {}).items():
        if name.startswith(("HTTPValidationError", "ValidationError")):
            continue
        fields = ", ".join(f"<code>{escape(k)}</code>" for k in model.get("properties", {}))
        out.append(f"<p><b>{escape(name)}</b>: {fields}. {escape(model.get('description', ''))}</p>")
    return "".join(out)


def docs_page(schema: dict) -> str:
    """The HTML of /docs for an OpenAPI `schema`."""
    info = schema.get("info", {})
    parts = [f"<!doctype html><meta charset=utf-8><title>{escape(info.get('title', 'API'))} API</title><style>{STYLE}</style>",
             f"<h1>{escape(info.get('title', ''))} {escape(info.get('version', ''))}: REST API</h1>",
             f"<p>{escape(info.get('description', ''))} The schema: <a href='/openapi.json'>/openapi.json</a>.</p>"]
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            parts.append(f"<h2><span class=m>{method.upper()}</span><code>{escape(path)}</code></h2>"
                         f"<p>{escape(op.get('summary', ''))}</p>{_parameters(op)}")
    parts.append("<h1>Bodies</h1>" + _schemas(schema))
    return "".join(parts)
