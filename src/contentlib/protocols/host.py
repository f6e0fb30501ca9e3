"""What a wire codec needs of the server, and nothing more.

Each protocol module (`rest`, `legacy_rest`, `jsonrpc`, `soap`) is a thin codec: it finds an operation of the one
table, decodes its inputs, authenticates the caller and encodes the result. It depends on this small interface,
which `app.App` implements, never on the App itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aiohttp import web

from contentlib.operations import Operation
from contentlib.services.auth import Auth
from contentlib.services.datastores import Datastores


class Host(Protocol):
    @property
    def operations(self) -> Sequence[Operation]:
        """The operation table, bound to the running server's services."""
        ...

    @property
    def auth(self) -> Auth:
        """Users and API sessions: one login for every protocol."""
        ...

    @property
    def datastores(self) -> Datastores:
        """This server's storage backings as datastores (the SOAP inventory shows them)."""
        ...

    @property
    def server_guid(self) -> str:
        """This server's identity (AboutInfo.instanceUuid, a library's server_guid)."""
        ...

    @property
    def max_body(self) -> int:
        """The largest API request body accepted, in bytes."""
        ...

    def base_url(self, request: web.BaseRequest) -> str:
        """Where clients reach this server (upload and download URIs are built from it)."""
        ...
