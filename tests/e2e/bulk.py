"""Filling mailboxes fast through the real server: several inbound SMTP connections at
once, each sending its messages with BDAT (RFC 3030), the envelope and the content of
a message in one write, so deliveries share the server's syncs."""

from __future__ import annotations

import asyncio
from typing import Callable


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed by the server")
        if line[3:4] != b"-":
            return line


async def _send(port: int, rcpt: str, messages: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _reply(reader)
    writer.write(b"EHLO bulk.remote.example\r\n")
    await _reply(reader)
    for content in messages:
        writer.write(
            b"MAIL FROM:<bulk@remote.example>\r\nRCPT TO:<%s>\r\nBDAT %d LAST\r\n%s"
            % (rcpt.encode(), len(content), content)
        )
        for expected in (b"250 2.1.0", b"250 2.1.5", b"250 2.0.0 Ok: queued as"):
            line = await _reply(reader)
            if not line.startswith(expected):
                raise RuntimeError(f"{line!r} where {expected!r} was expected")
    writer.write(b"QUIT\r\n")
    await _reply(reader)
    writer.close()
    await writer.wait_closed()


def deliver_many(
    port: int, rcpt: str, count: int, message: Callable[[int], bytes], connections: int = 8
) -> None:
    """Delivers `message(0)` … `message(count - 1)` to `rcpt` over `connections` inbound
    SMTP sessions on `port`. Messages of one connection arrive in order; across
    connections the order (and so the UIDs) interleave."""
    shares = [
        [message(i) for i in range(start, count, connections)] for start in range(connections)
    ]

    async def run() -> None:
        await asyncio.gather(*(_send(port, rcpt, share) for share in shares if share))

    asyncio.run(run())
