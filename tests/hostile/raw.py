"""HTTP/1.1 written by hand over a socket from a chosen loopback address: requests sent
exactly as a hostile or broken client sends them (slowly, never finished, chunked), and what
the server did with each. Linux routes all of 127.0.0.0/8 to ``lo``, so a test speaking from
127.0.0.5 is another client to the server."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    """Names lower-cased."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def head(method: str, path: str, port: int, **headers: str) -> bytes:
    """A request line and header block, ``Header_Name="value"`` for ``Header-Name: value``."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(*parts: bytes) -> bytes:
    """``parts`` as a chunked body, its last chunk included."""
    return b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in parts if part) + b"0\r\n\r\n"


class Raw:
    """One connection to 127.0.0.1:``port`` from ``source``."""

    def __init__(self, port: int, *, source: str = "127.0.0.1", timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.opened = time.monotonic()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> Answer | None:
        """The server's answer, or None when it closed the connection without one."""
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                data = self.sock.recv(65536)
                if not data:
                    return None
                received += data
            header_block, _, body = received.partition(b"\r\n\r\n")
            status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                data = self.sock.recv(65536)
                if not data:
                    break
                body += data
        except ConnectionResetError:
            return None
        return Answer(status=int(status_line.split()[1]), headers=headers, body=body)

    def closed_by_server(self) -> bool:
        """The server closed its side: a read returns end-of-file (or a reset)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def held_for(self) -> float:
        """Seconds since the connection was opened."""
        return time.monotonic() - self.opened
