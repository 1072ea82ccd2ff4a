"""The control socket: how `clarad` commands reach the running daemon (see ``protocol``)."""

from clarad.control.client import request
from clarad.control.protocol import MAX_MESSAGE, MAX_REQUEST, Command, encode, socket_path
from clarad.control.server import serve

__all__ = ["MAX_MESSAGE", "MAX_REQUEST", "Command", "encode", "request", "serve", "socket_path"]
