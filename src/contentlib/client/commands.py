"""The client's commands, for `cli.py` to register on `contentlib`."""

from __future__ import annotations

import click

from contentlib.client.items import item
from contentlib.client.libraries import library
from contentlib.client.sessions import login, logout, session

COMMANDS: tuple[click.Command, ...] = (login, logout, library, item, session)
