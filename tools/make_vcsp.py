"""Make a directory a static VCSP endpoint: write the lib.json, items.json and ITEM/item.json that a vCenter
subscribed library (or contentlib's subscriber) synchronizes from, in the format contentlib's publisher serves
(docs/vcsp.md; after VMware's make_vcsp_2018.py in lamw/vmware-scripts).

    python tools/make_vcsp.py --name NAME DIR [--checksum]

Every subdirectory of DIR is an item, named after it; its files are the item's files (flat: no subdirectories).
The item's type is `vcsp.ovf` when it has an OVF descriptor (`*.ovf`), `vcsp.iso` when its one file is an ISO
image, `vcsp.other` otherwise. Files and directories whose name starts with '.' are left out, and so are the files
at the top of DIR; `item.json` in an item directory is the item's own document. Afterwards any static HTTP server
that serves DIR is a VCSP endpoint with the subscription URL `http(s)://HOST/PATH/lib.json`.

Run it again after changing the tree: the versions only grow, as subscribers need. The library keeps its `id`
(`urn:uuid:`) and `created` (read back from lib.json), every item keeps its own (read back from its item.json). An
item whose files changed (a file added or removed, or one whose size, modification time or SHA-1 differs) gets
version + 1 and new etags; items.json drops the items whose directory is gone; lib.json's version grows when
anything changed (an item added, changed or removed, the library renamed) and stays the same otherwise, so that a
subscriber polling it has nothing to do.

The SHA-1 of every file and its size and modification time are kept in `DIR/.make_vcsp.json` (a cache, and the
record of the manifests written: no member of the feed): a file whose size and modification time did not change
is not read again unless `--checksum` is given (which also catches bytes rewritten with the old time kept).
Without that file, an item counts as changed when its file names or sizes differ from its item.json or a file is
newer than it.

Like the publisher, an OVF item without a manifest gets one, `{descriptor stem}.mf` written into its directory
(`SHA1(name)= hex` for each of its files but certificates), so that a subscriber can check what it downloaded; it
is rewritten when the item changes and removed when the item gets a manifest of its own. A manifest already there
is served as it is.

Errors (no such directory, a file where a directory is expected, a name that cannot be served, a lib.json or
item.json this tool cannot read back) are one line on stderr and exit status 1 (2 for a usage error); nothing is
written then.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, unquote

VCSP_VERSION = "2"
LIB_FILE = "lib.json"
ITEMS_FILE = "items.json"
ITEM_FILE = "item.json"
STATE_FILE = ".make_vcsp.json"
CAPABILITIES = {"transferIn": ["httpGet"], "transferOut": ["httpGet"]}
TYPE_OVF, TYPE_ISO, TYPE_OTHER = "vcsp.ovf", "vcsp.iso", "vcsp.other"
RESERVED = {LIB_FILE, ITEMS_FILE}  # an item directory of that name would hide the library's documents

JSON = dict[str, Any]
Signature = tuple[int, int, str]  # size, modification time (ns), SHA-1 (hex)


class ToolError(Exception):
    """Bad input: reported as one line, exit status 1."""


@dataclass
class Item:
    """One item directory as found, and what the feed says about it."""

    directory: str
    files: dict[str, Signature] = field(default_factory=dict)  # the directory's own files
    manifest: tuple[str, bytes] | None = None  # the manifest this tool adds (OVF without one)
    stale_manifest: str | None = None  # one it wrote before and that is no longer wanted
    document: JSON = field(default_factory=dict)
    changed: bool = False


def now_text() -> str:
    """UTC, milliseconds, `Z`: the publisher's times."""
    t = datetime.datetime.now(datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def check_name(name: str, what: str) -> str:
    """A name the feed can carry: UTF-8 text without control characters or backslashes (the publisher refuses
    these too; a newline would also break a manifest line). Anything else is percent-encoded in hrefs."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ToolError(f"{what} {name.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in name):
        raise ToolError(f"{what} {name!r} contains a control character or a backslash")
    return name


def href(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)


def vcsp_type(names: list[str]) -> str:
    """The publisher's rule (services/vcsp.py, `vcsp_type`) for items that have only files."""
    if any(n.lower().endswith(".ovf") for n in names):
        return TYPE_OVF
    if len(names) == 1 and names[0].lower().endswith(".iso"):
        return TYPE_ISO
    return TYPE_OTHER


def sha1_of(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def digits(value: Any) -> bool:
    return isinstance(value, str) and value.isascii() and value.isdigit()


def read_json(path: Path, what: str) -> JSON | None:
    """A document written by an earlier run, or None if there is none; ToolError if it is not one."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ToolError(f"{path}: cannot read the {what} back ({e}); move it away to start over") from None
    if not isinstance(data, dict):
        raise ToolError(f"{path}: the {what} is not a JSON object; move it away to start over")
    return data


def check_document(doc: JSON, path: Path, what: str) -> None:
    """What the next versions are computed from: a urn:uuid id, numeric versions, a creation time."""
    ident = doc.get("id")
    try:
        ok = isinstance(ident, str) and ident.startswith("urn:uuid:") and bool(uuid.UUID(ident[9:]))
    except ValueError:
        ok = False
    if not ok or not digits(doc.get("version")) or not isinstance(doc.get("created"), str):
        raise ToolError(f"{path}: not a VCSP {what} (id urn:uuid:..., numeric version, created); move it away")
    if what == ITEM_FILE and not digits(doc.setdefault("contentVersion", doc["version"])):
        raise ToolError(f"{path}: not a VCSP item.json (numeric contentVersion); move it away")


def load_state(root: Path) -> dict[str, Any]:
    """The cache of file signatures and written manifests; an unreadable one is as none (a cache: at worst items
    are read again and count as changed)."""
    try:
        state = json.loads((root / STATE_FILE).read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        print(f"make_vcsp: warning: {root / STATE_FILE} is unreadable, ignored", file=sys.stderr)
        return {}
    items = state.get("items") if isinstance(state, dict) else None
    return items if isinstance(items, dict) else {}


def scan_item(root: Path, directory: str, cached: dict[str, Any], checksum: bool) -> Item:
    """The item's files with their signatures (SHA-1 read again only when size or time changed, or with
    `checksum`), and the manifest the feed adds if the item is an OVF template without one."""
    path = root / directory
    item = Item(directory)
    known: dict[str, Any] = cached["files"] if isinstance(cached.get("files"), dict) else {}
    ours = cached.get("manifest")  # [name, sha1] of the manifest an earlier run wrote
    ours_name, ours_sha1 = ours if isinstance(ours, list) and len(ours) == 2 else (None, None)
    for name in sorted(os.listdir(path)):
        if name.startswith(".") or name == ITEM_FILE:
            continue
        check_name(name, f"the file name in {directory!r}")
        p = path / name
        st = p.stat()
        if p.is_dir():
            raise ToolError(f"{p}: an item's files must be flat (a subdirectory cannot be served as an item file)")
        if not p.is_file():
            raise ToolError(f"{p}: not a regular file")
        old = known.get(name)
        if isinstance(old, list) and old[:2] == [st.st_size, st.st_mtime_ns] and len(old) == 3 and not checksum:
            digest = str(old[2])
        else:
            digest = sha1_of(p)
        if name == ours_name and digest == ours_sha1:
            continue  # the manifest this tool wrote, unchanged since: made again below
        item.files[name] = (st.st_size, st.st_mtime_ns, digest)
    names = list(item.files)
    if vcsp_type(names) == TYPE_OVF and not any(n.lower().endswith(".mf") for n in names):
        descriptor = next(n for n in names if n.lower().endswith(".ovf"))
        listed = [n for n in names if not n.lower().endswith(".cert")]
        text = "".join(f"SHA1({n})= {item.files[n][2]}\n" for n in listed)
        item.manifest = (descriptor[: -len(".ovf")] + ".mf", text.encode())
    if (
        ours_name is not None
        and ours_name not in item.files
        and (item.manifest is None or item.manifest[0] != ours_name)
    ):
        item.stale_manifest = ours_name
    return item


def feed_files(item: Item) -> list[tuple[str, int]]:
    """(name, size) of the item's files in the feed, by name (the added manifest too: so that the documents do not
    change when the state file is lost and the manifest is taken for the item's own)."""
    files = [(n, sig[0]) for n, sig in item.files.items()]
    if item.manifest is not None:
        files.append((item.manifest[0], len(item.manifest[1])))
    return sorted(files)


def build_item(item: Item, previous: JSON | None, cached: dict[str, Any], item_json_mtime: int | None) -> None:
    """The item's document, with the versions of `previous` (its item.json) raised when its files changed."""
    files = feed_files(item)
    if previous is None:
        ident, created, version, content = f"urn:uuid:{uuid.uuid4()}", now_text(), 1, 1
        item.changed = True
    else:
        ident, created = previous["id"], previous["created"]
        version, content = int(previous["version"]), int(previous["contentVersion"])
        old_files = previous.get("files")
        listed = (
            sorted((f.get("name"), f.get("size")) for f in old_files if isinstance(f, dict))
            if isinstance(old_files, list)
            else None
        )
        if listed != sorted(files):
            item.changed = True
        elif cached.get("id") == ident and isinstance(cached.get("files"), dict):
            old = cached["files"]
            item.changed = any(old.get(n) != list(sig) for n, sig in item.files.items())
        else:  # no record of the signatures: a file newer than the item.json is a change
            item.changed = any(sig[1] > (item_json_mtime or 0) for sig in item.files.values())
    doc = document(item, ident, created, version, content, files)
    if previous is not None and not item.changed and doc != previous:
        item.changed = True  # edited by hand, or written by an older version of this tool
    if previous is not None and item.changed:
        version, content = version + 1, content + 1
        doc = document(item, ident, created, version, content, files)
    item.document = doc


def document(item: Item, ident: str, created: str, version: int, content: int, files: list[tuple[str, int]]) -> JSON:
    """item.json, member by member as the publisher serves it (services/vcsp.py `_item`): the etag of every file
    is the item's content version, a string of digits (vCenter reads it as a long)."""
    return {
        "created": created,
        "description": "",
        "version": str(version),
        "contentVersion": str(content),
        "files": [
            {
                "name": name,
                "size": size,
                "etag": str(content),
                "generationNum": content,
                "hrefs": [href(item.directory, name)],
            }
            for name, size in files
        ],
        "id": ident,
        "name": item.directory,
        "properties": {},
        "selfHref": href(item.directory, ITEM_FILE),
        "type": vcsp_type([n for n, _ in files]),
    }


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` at once: an HTTP server serving the tree never sends half a document."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump(doc: JSON) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


@dataclass
class Result:
    version: str
    items: int
    added: list[str]
    changed: list[str]
    removed: list[str]


def make_vcsp(root: Path, name: str, checksum: bool = False) -> Result:
    """Write (or bring up to date) the VCSP documents of the tree at `root`; what changed."""
    if not name.strip():
        raise ToolError("the library name must not be empty")
    check_name(name, "the library name")
    if not root.exists():
        raise ToolError(f"{root}: no such directory")
    if not root.is_dir():
        raise ToolError(f"{root}: not a directory (the tree's root is a directory of item directories)")
    old_lib = read_json(root / LIB_FILE, LIB_FILE)
    if old_lib is not None:
        check_document(old_lib, root / LIB_FILE, LIB_FILE)
    old_items = read_json(root / ITEMS_FILE, ITEMS_FILE) if old_lib is not None else None
    listed: set[str] = set()
    if old_items is not None:
        entries = old_items.get("items")
        if not isinstance(entries, list):
            raise ToolError(f"{root / ITEMS_FILE}: not a VCSP items.json (no items array); move it away")
        for entry in entries:
            self_href = entry.get("selfHref") if isinstance(entry, dict) else None
            if isinstance(self_href, str) and "/" in self_href:
                listed.add(unquote(self_href.split("/", 1)[0]))
    state = load_state(root)

    directories = []
    for entry in sorted(os.listdir(root)):
        if entry.startswith(".") or not (root / entry).is_dir():
            continue
        check_name(entry, "the item directory name")
        if entry in RESERVED:
            raise ToolError(f"{root / entry}: an item directory cannot be named {entry} (the library's own document)")
        directories.append(entry)

    items = []
    for directory in directories:
        entry = state.get(directory)
        cached: dict[str, Any] = entry if isinstance(entry, dict) else {}
        item = scan_item(root, directory, cached, checksum)
        item_path = root / directory / ITEM_FILE
        previous = read_json(item_path, ITEM_FILE)
        mtime = None
        if previous is not None:
            check_document(previous, item_path, ITEM_FILE)
            mtime = item_path.stat().st_mtime_ns
        build_item(item, previous, cached, mtime)
        items.append(item)

    added = [i.directory for i in items if i.directory not in listed]
    changed = [i.directory for i in items if i.changed and i.directory in listed]
    removed = sorted(listed - set(directories))
    renamed = old_lib is not None and old_lib.get("name") != name
    if old_lib is None:
        lib_id, created, version = f"urn:uuid:{uuid.uuid4()}", now_text(), 1
    else:
        lib_id, created, version = old_lib["id"], old_lib["created"], int(old_lib["version"])
        if added or changed or removed or renamed or items_differ(old_items, items):
            version += 1
    lib = {
        "vcspVersion": VCSP_VERSION,
        "version": str(version),
        "contentVersion": str(version),
        "name": name,
        "id": lib_id,
        "created": created,
        "capabilities": CAPABILITIES,
        "itemsHref": ITEMS_FILE,
    }

    # Items first, lib.json last: a subscriber that sees the new version finds everything it names.
    new_state: dict[str, Any] = {}
    for item in items:
        folder = root / item.directory
        if item.manifest is not None:
            mf_path = folder / item.manifest[0]
            if not mf_path.exists() or mf_path.read_bytes() != item.manifest[1]:
                write_atomically(mf_path, item.manifest[1])
        if item.stale_manifest is not None:
            (folder / item.stale_manifest).unlink(missing_ok=True)
        if item.changed:
            write_atomically(folder / ITEM_FILE, dump(item.document))
        new_state[item.directory] = {
            "id": item.document["id"],
            "files": {n: list(sig) for n, sig in item.files.items()},
            "manifest": None
            if item.manifest is None
            else [item.manifest[0], hashlib.sha1(item.manifest[1]).hexdigest()],
        }
    items_doc = {"items": [i.document for i in items]}
    if old_items != items_doc:
        write_atomically(root / ITEMS_FILE, dump(items_doc))
    if old_lib != lib:
        write_atomically(root / LIB_FILE, dump(lib))
    state_bytes = dump({"items": new_state})
    if not (root / STATE_FILE).is_file() or (root / STATE_FILE).read_bytes() != state_bytes:
        write_atomically(root / STATE_FILE, state_bytes)
    return Result(str(version), len(items), added, changed, removed)


def items_differ(old_items: JSON | None, items: list[Item]) -> bool:
    """items.json would say something else than before (it lists every item exactly as its item.json)."""
    return old_items != {"items": [i.document for i in items]}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Usage errors in one line too (argparse prints the usage first)."""
        self.exit(2, f"make_vcsp: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="make_vcsp.py",
        description="Write lib.json, items.json and ITEM/item.json into DIR so that a static HTTP server serving DIR "
        "is a VCSP endpoint (subscription URL: .../lib.json). Every subdirectory of DIR is an item.",
    )
    parser.add_argument("--name", required=True, help="the library's name")
    parser.add_argument("--checksum", action="store_true", help="read every file again, even if size and time match")
    parser.add_argument("dir", type=Path, metavar="DIR", help="the tree's root directory")
    args = parser.parse_args(argv)
    try:
        result = make_vcsp(args.dir, args.name, args.checksum)
    except ToolError as e:
        print(f"make_vcsp: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"make_vcsp: error: {e.filename or args.dir}: {e.strerror or e}", file=sys.stderr)
        return 1
    except Exception as e:  # never a traceback
        print(f"make_vcsp: error: unexpected {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    summary = ", ".join(
        f"{len(names)} {what}"
        for what, names in (("added", result.added), ("changed", result.changed), ("removed", result.removed))
        if names
    )
    print(
        f"{args.dir / LIB_FILE}: version {result.version}, {result.items} items" + (f" ({summary})" if summary else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
