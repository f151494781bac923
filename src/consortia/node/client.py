"""A small client for a node's loopback client port (used by the CLI, tests and benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from consortia.net import frames


class NodeUnreachableError(ConnectionError):
    """Nothing answers on the node's client port."""


class ClientConnection:
    """One connection; requests are answered in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int, *, timeout_s: float = 5.0) -> ClientConnection:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except (OSError, TimeoutError) as exc:
            raise NodeUnreachableError(f"no node answers on {host}:{port}: {exc}") from exc
        return cls(reader, writer)

    async def request(self, kind: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self._writer.write(frames.encode_message(frames.Message(kind, body or {})))
        await self._writer.drain()
        reply = await frames.read_frame(self._reader)
        if not isinstance(reply, dict):
            raise NodeUnreachableError("the node closed the connection")
        return reply

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


async def request(
    host: str, port: int, kind: str, body: dict[str, Any] | None = None, *, timeout_s: float = 10.0
) -> dict[str, Any]:
    conn = await ClientConnection.open(host, port, timeout_s=timeout_s)
    try:
        return await asyncio.wait_for(conn.request(kind, body), timeout_s)
    except TimeoutError as exc:
        raise NodeUnreachableError(f"{host}:{port} did not answer within {timeout_s} s") from exc
    finally:
        await conn.close()


def call(
    host: str, port: int, kind: str, body: dict[str, Any] | None = None, *, timeout_s: float = 10.0
) -> dict[str, Any]:
    """Blocking form of ``request``."""
    return asyncio.run(request(host, port, kind, body, timeout_s=timeout_s))
