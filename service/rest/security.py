"""Response headers for a public ingress. Added by RequestContextMiddleware to every HTTP response, unless the
route set the header itself (the web page sends its own Content-Security-Policy and Cache-Control).

- every response: `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY`,
  `Cross-Origin-Opener-Policy: same-origin`, and a Content-Security-Policy;
- the CSP: PAGE_POLICY for HTML (the web page at GET / is written for it), API_POLICY for everything else
  (JSON and /metrics load nothing), DOCS_POLICY for Swagger UI at docs_path, which loads its script and
  stylesheet from this service (service/rest/routes/docs.py) and runs one inline script, allowed by its sha256 hash
  (computed from the page as served, so a FastAPI upgrade that changes the script cannot break or loosen it);
- `Cache-Control: no-store` on every response that does not set its own (API answers, errors, /metrics, docs).

HSTS is left to the TLS-terminating ingress, which knows whether the host is HTTPS-only.
"""

from __future__ import annotations

import base64
import hashlib
import re

PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
NO_STORE = (b"cache-control", b"no-store")

_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def docs_policy(html: bytes) -> str:
    """Swagger UI's policy: its own assets from this origin, and the page's inline scripts by hash only (Swagger
    UI sets inline styles on elements, hence 'unsafe-inline' for styles alone)."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'" for body in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}".rstrip()
        + "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    )


def default_policy(content_type: bytes) -> str:
    return PAGE_POLICY if content_type.lower().startswith(b"text/html") else API_POLICY
