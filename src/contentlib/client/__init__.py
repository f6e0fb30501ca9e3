"""`contentlib login | logout | library | item | session`: a client of the public /api (this server or a vCenter).

docs/cli.md is the user's guide: the commands, the login file, the exit codes.
"""
