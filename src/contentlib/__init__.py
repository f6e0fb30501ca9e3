"""contentlib: a standalone, persistent vSphere Content Library server."""

__version__ = "0.1.0"
