"""Legato's version: the one source (the package metadata reads it, clients send it to the
server, which refuses another release line)."""

__version__ = "0.1.0"
