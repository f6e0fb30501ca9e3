"""Regenerate src/contentlib/protocols/vapi_meta.json from the contract in ../shared/api.

The JSON-RPC codec needs, for every operation we serve, its parameter and output types, and for every structure
its canonical name and typed fields (to tag values the way the vAPI runtime expects). This keeps just that part of
operations.json and types.json (which were extracted from the official SDK's bindings).

    python tools/gen_vapi_meta.py [../shared/api]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SERVICES = {
    "com.vmware.cis.session",
    "com.vmware.content.local_library",
    "com.vmware.content.library",
    "com.vmware.content.library.item",
    "com.vmware.content.library.item.file",
    "com.vmware.content.library.item.update_session",
    "com.vmware.content.library.item.updatesession.file",
    "com.vmware.content.library.item.download_session",
    "com.vmware.content.library.item.downloadsession.file",
    "com.vmware.content.trusted_certificates",
    "com.vmware.content.library.item.storage",
    "com.vmware.content.library.item.changes",
    "com.vmware.content.configuration",
    "com.vmware.content.security_policies",
    "com.vmware.content.type",
    "com.vmware.content.subscribed_library",
    "com.vmware.content.library.subscribed_item",
    "com.vmware.content.library.subscriptions",
}


def main() -> None:
    api = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "api")
    ops = json.loads((api / "operations.json").read_text())["operations"]
    types = json.loads((api / "types.json").read_text())
    out = {
        "operations": {
            f"{op['service']}/{op['operation']}": {
                "params": [[p["name"], p["type"]] for p in op["params"]],
                "output": op["output"],
                "errors": [e["vapi_id"] for e in op["errors"]],
            }
            for op in ops
            if op["service"] in SERVICES
        },
        "services": sorted({op["service"] for op in ops}),
        "structures": {
            name: {"canonical_name": s["canonical_name"], "fields": [[f["name"], f["type"]] for f in s["fields"]]}
            for name, s in {**types["structures"], **types["errors"]}.items()
        },
        "enums": {name: [v["value"] for v in e["values"]] for name, e in types["enums"].items()},
    }
    target = Path(__file__).resolve().parents[1] / "src" / "contentlib" / "protocols" / "vapi_meta.json"
    target.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {target} ({len(out['operations'])} operations, {len(out['structures'])} structures)")


if __name__ == "__main__":
    main()
