"""An asyncio MLLP client: one HL7 message out, one ACK back, on a kept-alive TCP connection.

MLLP (HL7 v2.5 Appendix C, "Minimal Lower Layer Protocol" release 2) frames each message as
``<VT> message <FS><CR>`` (0x0B ... 0x1C 0x0D). The protocol is strictly request/answer on a connection, so
the client sends one message at a time (a lock) and drops the connection after any failure or timeout: a late
ACK must never be read as the answer to the next message.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

__all__ = ["END_BLOCK", "START_BLOCK", "MllpClient", "MllpError", "MllpTimeout", "frame", "unframe"]

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
#: ACKs are small; this only bounds memory if a peer streams garbage without an end block.
_READ_LIMIT = 16 * 1024 * 1024


class MllpError(Exception):
    """The connection failed (refused, reset, closed before the ACK): the message may be resent."""


class MllpTimeout(MllpError):
    """No ACK arrived in time: the message may or may not have been filed; resend with the same MSH-10."""


def frame(message: bytes) -> bytes:
    return START_BLOCK + message + END_BLOCK


def unframe(block: bytes) -> bytes:
    """The message inside one MLLP block (``block`` ends with the end block, as ``readuntil`` returns it)."""
    if not block.endswith(END_BLOCK):
        raise MllpError("MLLP block without <FS><CR> end")
    start = block.find(START_BLOCK)
    if start < 0:
        raise MllpError("MLLP block without <VT> start")
    return block[start + 1 : -len(END_BLOCK)]


class MllpClient:
    """Sends framed messages to ``host:port`` and returns the framed answer's text.

    ``async with MllpClient(...) as client: ack = await client.send(text)``; ``close()`` may be called twice.
    """

    def __init__(self, host: str, port: int, *, connect_timeout: float = 5.0, ack_timeout: float = 30.0,
                 encoding: str = "utf-8") -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.encoding = encoding
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None and not self._writer.is_closing():
            return self._reader, self._writer
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=_READ_LIMIT), self.connect_timeout
            )
        except TimeoutError as exc:
            raise MllpTimeout(f"no TCP connection to {self.host}:{self.port} within {self.connect_timeout} s") from exc
        except OSError as exc:
            raise MllpError(f"cannot connect to {self.host}:{self.port} ({exc.strerror or type(exc).__name__})") from exc
        self._reader, self._writer = reader, writer
        return reader, writer

    async def send(self, message: str) -> str:
        """Send one message, wait for the answer block, return its text."""
        async with self._lock:
            reader, writer = await self._connect()
            try:
                writer.write(frame(message.encode(self.encoding)))
                await writer.drain()
                block = await asyncio.wait_for(reader.readuntil(END_BLOCK), self.ack_timeout)
            except TimeoutError as exc:
                await self._drop()
                raise MllpTimeout(f"no ACK from {self.host}:{self.port} within {self.ack_timeout} s") from exc
            except asyncio.IncompleteReadError as exc:
                await self._drop()
                raise MllpError(f"{self.host}:{self.port} closed the connection before answering") from exc
            except (OSError, asyncio.LimitOverrunError) as exc:
                await self._drop()
                raise MllpError(f"connection to {self.host}:{self.port} failed ({type(exc).__name__})") from exc
            return unframe(block).decode(self.encoding, "replace")

    async def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def close(self) -> None:
        await self._drop()
