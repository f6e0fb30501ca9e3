"""An incremental tar reader for OVA uploads: bytes in, member events out, nothing buffered but one header.

`feed(chunk)` returns events in order: `Member(name, size)` when a member's header is complete, `Data(view)` for
each piece of its contents (views into the chunk: no copy), `MemberEnd()` after its last byte, and `End()` at the
end-of-archive marker. Only regular files with plain names are accepted (an OVA is a flat archive): directories,
links, devices, absolute or `..` paths and names with `/` raise `TarError`, so nothing outside the session can be
written. ustar, pax (`path`, `size`) and GNU long-name headers are understood.
"""

from __future__ import annotations

from dataclasses import dataclass

BLOCK = 512
MAX_META = 1024 * 1024  # a pax or long-name header is metadata; refuse huge ones
# An OVF package is a descriptor, a manifest, a certificate and its disks (a VM has at most 256); each member becomes
# a file of the session, so an archive of thousands of empty members would be a cheap way to keep the server busy.
MAX_MEMBERS = 300


class TarError(Exception):
    pass


@dataclass(frozen=True)
class Member:
    name: str
    size: int


@dataclass(frozen=True)
class Data:
    view: memoryview


@dataclass(frozen=True)
class MemberEnd:
    pass


@dataclass(frozen=True)
class End:
    pass


Event = Member | Data | MemberEnd | End


def _number(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for big sizes
        value = int.from_bytes(field, "big") & ~(0x80 << (8 * (len(field) - 1)))
        return value
    text = field.rstrip(b"\0 ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarError(f"a tar header has a malformed number {field!r}") from None


def _checksum_ok(header: bytes) -> bool:
    stored = _number(header[148:156])
    computed = sum(header[:148]) + 8 * 32 + sum(header[156:])
    return stored == computed


def _pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise TarError("a pax header is malformed")
        length = int(data[pos:space])
        record = data[space + 1 : pos + length - 1].decode("utf-8", "replace")
        key, _, value = record.partition("=")
        records[key] = value
        pos += length
    return records


class TarReader:
    def __init__(self) -> None:
        self._header = bytearray()
        self._remaining = 0  # content bytes left in the current entry
        self._padding = 0  # bytes to skip after it
        self._meta: bytearray | None = None  # content of a pax/long-name entry being collected
        self._meta_kind = b""
        self._next_name: str | None = None
        self._next_size: int | None = None
        self._in_member = False
        self._zero_blocks = 0
        self._members = 0
        self.ended = False

    def feed(self, chunk: bytes | memoryview) -> list[Event]:
        events: list[Event] = []
        view = memoryview(chunk)
        while view and not self.ended:
            if self._remaining:
                n = min(self._remaining, len(view))
                if self._meta is not None:
                    self._meta += view[:n]
                else:
                    events.append(Data(view[:n]))
                self._remaining -= n
                view = view[n:]
                if not self._remaining:
                    self._end_entry(events)
                continue
            if self._padding:
                n = min(self._padding, len(view))
                self._padding -= n
                view = view[n:]
                continue
            n = min(BLOCK - len(self._header), len(view))
            self._header += view[:n]
            view = view[n:]
            if len(self._header) == BLOCK:
                header, self._header = bytes(self._header), bytearray()
                self._start_entry(header, events)
        return events

    def _end_entry(self, events: list[Event]) -> None:
        if self._meta is not None:
            data, kind, self._meta = bytes(self._meta), self._meta_kind, None
            if kind == b"L":
                self._next_name = data.rstrip(b"\0").decode("utf-8", "replace")
            elif kind == b"x":
                records = _pax(data)
                if "path" in records:
                    self._next_name = records["path"]
                if "size" in records:
                    self._next_size = int(records["size"])
        elif self._in_member:
            self._in_member = False
            events.append(MemberEnd())

    def _start_entry(self, header: bytes, events: list[Event]) -> None:
        if header == bytes(BLOCK):
            self._zero_blocks += 1
            if self._zero_blocks == 2:
                self.ended = True
                events.append(End())
            return
        if self._zero_blocks:
            raise TarError("the archive continues after an end-of-archive block")
        if not _checksum_ok(header):
            raise TarError("not a tar archive (a header checksum does not match)")
        kind = header[156:157]
        size = _number(header[124:136])
        self._padding = -size % BLOCK
        if kind in (b"x", b"g", b"L"):
            if size > MAX_META:
                raise TarError("a tar metadata header is too large")
            self._meta = bytearray()
            self._meta_kind = kind
            self._remaining = size
            if not size:
                self._end_entry(events)
            return
        if kind not in (b"0", b"\0", b"7"):
            what = {b"1": "a hard link", b"2": "a symbolic link", b"5": "a directory"}.get(kind, f"type {kind!r}")
            raise TarError(f"the archive holds {what}; an OVA may only hold plain files")
        name = self._next_name
        if name is None:
            prefix = header[345:500].split(b"\0", 1)[0] if header[257:262] == b"ustar" else b""
            raw = header[:100].split(b"\0", 1)[0]
            name = ((prefix + b"/" + raw) if prefix else raw).decode("utf-8", "replace")
        if self._next_size is not None:
            size = self._next_size
            self._padding = -size % BLOCK
        self._next_name = self._next_size = None
        if name.startswith("./"):
            name = name[2:]
        if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
            raise TarError(f"the archive member {name!r} is not a plain file name")
        self._members += 1
        if self._members > MAX_MEMBERS:
            raise TarError(f"the archive holds more than {MAX_MEMBERS} files")
        self._in_member = True
        self._remaining = size
        events.append(Member(name, size))
        if not size:
            self._end_entry(events)
