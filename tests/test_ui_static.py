"""The web UI's static files at /ui/ (src/contentlib/protocols/ui.py, docs/ui.md), with plain HTTP: content types,
the Content-Security-Policy and caching headers (ETag, 304, HEAD), the redirects of / and /ui, 404 for a name that is no
file of the UI, 405 for other methods, and no way out of the UI's folder (`..`, percent-encoded or not). The UI in
a browser is tests/test_ui.py.
"""

from __future__ import annotations

import http.client
import os
import re

import pytest
import requests
from conftest import ServerProcess


@pytest.fixture(autouse=True)
def _no_ca_bundle() -> None:
    os.environ.pop("REQUESTS_CA_BUNDLE", None)  # plain HTTP to a test server


def raw_get(server: ServerProcess, path: str, method: str = "GET") -> http.client.HTTPResponse:
    """A request for exactly `path` (no client-side normalization of `..` or percent-escapes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path)
    r = conn.getresponse()
    r.read()
    conn.close()
    return r


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/index.html", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/upload.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
    ],
)
def test_static_file_types_and_headers(server: ServerProcess, path: str, content_type: str) -> None:
    r = requests.get(server.base + path, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == content_type
    assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "unsafe" not in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-cache"
    etag = r.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    again = requests.get(server.base + path, headers={"If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    head = requests.head(server.base + path, timeout=30)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(r.content))


def test_static_index_is_the_shell(server: ServerProcess) -> None:
    html = requests.get(server.base + "/ui/", timeout=30).text
    assert '<script type="module" src="app.js"></script>' in html
    assert "http://" not in html and "https://" not in html  # nothing from outside this server
    for name in ("app.js", "api.js", "dom.js", "libraries.js", "item.js", "upload.js", "certificates.js"):
        js = requests.get(f"{server.base}/ui/{name}", timeout=30).text
        assert not re.search(r"""(import|from)\s*\(?\s*["']https?:""", js), name  # no CDN modules
        assert "innerHTML" not in js, name  # text from the server never becomes markup


def test_static_redirect_and_errors(server: ServerProcess) -> None:
    r = requests.get(server.base + "/ui", allow_redirects=False, timeout=30)
    assert r.status_code == 301 and r.headers["Location"] == "/ui/"
    r = requests.get(server.base + "/", allow_redirects=False, timeout=30)
    assert r.status_code == 302 and r.headers["Location"] == "/ui/"
    r = requests.post(server.base + "/", timeout=30)  # any other method on the root is no operation
    assert r.status_code == 404 and r.json()["error_type"] == "OPERATION_NOT_FOUND"
    r = requests.get(server.base + "/ui/nothing.js", timeout=30)
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("text/plain")
    assert "not a file of the web UI" in r.text
    assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
    r = requests.post(server.base + "/ui/app.js", data=b"x", timeout=30)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    r = requests.delete(server.base + "/ui", timeout=30)
    assert r.status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../protocols/ui.py",
        "/ui/%2e%2e/protocols/ui.py",
        "/ui/%2E%2E/%2E%2E/pyproject.toml",
        "/ui/..%2fprotocols%2fui.py",
        "/ui/./../app.py",
        "/ui//etc/passwd",
        "/ui/%2fetc%2fpasswd",
        "/ui/app.js%00",
        "/ui/app.js/",
        "/ui/..",
        "/ui/.",
    ],
)
def test_static_no_path_traversal(server: ServerProcess, path: str) -> None:
    r = raw_get(server, path)
    assert r.status == 404, (path, r.status)
