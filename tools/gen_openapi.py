"""Regenerate src/contentlib/protocols/openapi.json (served at /api/openapi.json) from the vendor's Swagger documents
in ../shared/api.

It keeps, of vsphere-8.0.2-content.swagger.json and vsphere-8.0.2-session.swagger.json, exactly the /api paths and
methods this server serves, and the definitions they reference (transitively). What is served is what the /api
codec's router resolves: each documented path and method is routed as a request would be (its path variables
filled in, its `?action=...` or `?name` marker as the query), and kept when an operation of the table answers it.

    python tools/gen_openapi.py [../shared/api]      # writes the file
    python tools/gen_openapi.py --check [...]        # exit status 1 when the file differs from what it would write
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from contentlib import errors  # noqa: E402
from contentlib.app import open_app  # noqa: E402
from contentlib.config import Settings  # noqa: E402
from contentlib.operations import Operation  # noqa: E402
from contentlib.protocols.rest import Router  # noqa: E402

SOURCES = ("vsphere-8.0.2-session.swagger.json", "vsphere-8.0.2-content.swagger.json")
TARGET = ROOT / "src" / "contentlib" / "protocols" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
_VARIABLE = re.compile(r"\{(\w+)\}")


def default_api_dir() -> Path:
    return ROOT.parent / "shared" / "api"


async def _operations() -> list[Operation]:
    """The operation table of a server built in a scratch data dir (never started)."""
    with tempfile.TemporaryDirectory() as scratch:
        app = await open_app(Settings(data_dir=Path(scratch)))
        try:
            return list(app.operations)
        finally:
            await app.store.close()
            await app.core.blobs.close()


def resolve(router: Router, method: str, documented: str) -> Operation | None:
    """The operation the /api router answers a documented path and method with, or None."""
    path, _, marker = documented.partition("?")
    query = dict(urllib.parse.parse_qsl(marker, keep_blank_values=True))
    concrete = _VARIABLE.sub("x", path)
    try:
        op, _ = router.match(method.upper(), concrete, query)
    except errors.ApiError:
        return None
    return op


def _refs(value: Any) -> set[str]:
    """The definitions `value` names with `$ref`."""
    found: set[str] = set()
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            found.add(ref.removeprefix("#/definitions/"))
        for member in value.values():
            found |= _refs(member)
    elif isinstance(value, list):
        for member in value:
            found |= _refs(member)
    return found


def build(api_dir: Path, operations: list[Operation]) -> dict[str, Any]:
    router = Router(operations)
    sources = [json.loads((api_dir / name).read_text()) for name in SOURCES]
    paths: dict[str, dict[str, Any]] = {}
    definitions: dict[str, Any] = {}
    for source in sources:
        definitions.update(source.get("definitions", {}))
        for documented, item in source["paths"].items():
            if not documented.startswith("/api/"):
                continue
            kept = {m: spec for m, spec in item.items() if m in METHODS and resolve(router, m, documented)}
            if kept:
                shared = {k: v for k, v in item.items() if k not in METHODS}  # path-level parameters
                paths[documented] = {**shared, **kept}
    needed: set[str] = set()
    todo = _refs(paths)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        todo |= _refs(definitions[name]) - needed
    content = sources[-1]
    tags = sorted(
        {t for item in paths.values() for spec in item.values() if isinstance(spec, dict) for t in spec.get("tags", [])}
    )
    return {
        "swagger": content["swagger"],
        "info": {
            "title": "contentlib: vSphere Automation API (Content Library, session)",
            "description": "The operations of the vSphere 8.0.2 Content Library and session APIs that this server "
            "serves, from VMware's published specifications.",
            "version": content["info"]["version"],
        },
        "host": "localhost",  # the request's, when served
        "schemes": ["https"],
        "produces": content.get("produces", ["application/json"]),
        "consumes": content.get("consumes", ["application/json"]),
        "securityDefinitions": content["securityDefinitions"],
        "tags": [{"name": t} for t in tags],
        "paths": dict(sorted(paths.items())),
        "definitions": {name: definitions[name] for name in sorted(needed)},
    }


def render(api_dir: Path) -> str:
    return json.dumps(build(api_dir, asyncio.run(_operations())), indent=1, sort_keys=False) + "\n"


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--check"]
    api_dir = Path(args[0]) if args else default_api_dir()
    text = render(api_dir)
    if "--check" in sys.argv[1:]:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is not what tools/gen_openapi.py generates now", file=sys.stderr)
            raise SystemExit(1)
        return
    TARGET.write_text(text)
    print(f"wrote {TARGET} ({len(json.loads(text)['paths'])} paths)")


if __name__ == "__main__":
    main()
