"""Length-prefixed frames over a byte stream.

Wire format: a 4-byte unsigned big-endian length ``L`` followed by exactly ``L`` payload
bytes. ``L`` may be 0. Every reader has a ``max_frame_size`` and rejects a header
announcing more than that as soon as the 4 header bytes are in, before reading or
buffering any of the payload.

Why a fixed 4-byte header rather than an unsigned varint (as multistream/libp2p msgio
use)?

- One encoding per length: a varint can encode the same value in several ways (padding
  ``0x80`` bytes) unless the reader also enforces minimality; a fixed header has nothing
  to get wrong, which matters for a protocol whose inputs are adversarial.
- The limit check happens at a fixed point (after exactly 4 bytes), and a stream of
  ``0x80`` bytes cannot keep a reader in the header state.
- The cost is at most 3 bytes per frame compared with a varint, irrelevant next to
  payloads of hashes, signatures and chunks. Frames are capped at 2**32 - 1 bytes, far
  above any limit we would configure.

Layout of this module:

- :func:`encode_frame` and :class:`FrameDecoder` are sans-IO: no sockets, no trio. The
  decoder accepts the byte stream in arbitrary pieces and returns complete frames.
- :func:`read_frame` / :func:`write_frame` are thin async drivers for libp2p streams
  (anything with ``async read(n)`` / ``async write(data)``). ``read_frame`` has no
  deadline of its own: a caller that must not wait forever wraps it in
  ``trio.fail_after(...)`` / ``trio.move_on_after(...)``, choosing the budget that fits
  the protocol step (and a per-frame deadline bounds a slow-loris peer only together with
  a reasonable ``max_size``).
"""

from __future__ import annotations

import struct
from typing import Protocol

from trust.errors import DecodeError

__all__ = [
    "HEADER_SIZE",
    "MAX_ENCODABLE",
    "encode_frame",
    "encode_frame_parts",
    "FrameDecoder",
    "read_frame",
    "FrameReader",
    "write_frame",
    "FrameWriter",
]

HEADER_SIZE = 4
MAX_ENCODABLE = 2**32 - 1
_HEADER = struct.Struct(">I")
# Largest single read request while receiving a payload; Yamux delivers at most 64 KiB
# per data frame anyway, so asking for more only matters for other stream types.
_READ_CHUNK = 1 << 20


def _check_limit(max_size: int) -> int:
    if isinstance(max_size, bool) or not isinstance(max_size, int):
        raise TypeError("max frame size must be an int")
    if not 0 <= max_size <= MAX_ENCODABLE:
        raise ValueError(f"max frame size must be between 0 and {MAX_ENCODABLE}")
    return max_size


def encode_frame(payload: bytes, max_size: int) -> bytes:
    """Header + ``payload``. Raises ``ValueError`` if ``payload`` exceeds ``max_size``.

    (Too large an outgoing frame is our own mistake, not bad input, hence ValueError
    rather than DecodeError.)
    """
    _check_limit(max_size)
    n = len(payload)
    if n > max_size:
        raise ValueError(f"frame payload of {n} bytes exceeds the limit of {max_size} bytes")
    return _HEADER.pack(n) + bytes(payload)


def encode_frame_parts(parts: "tuple[bytes, ...] | list[bytes]", max_size: int) -> bytes:
    """Header + the concatenation of ``parts``, built with one copy of each part (the same
    bytes as ``encode_frame(b"".join(parts), max_size)``)."""
    _check_limit(max_size)
    n = sum(len(p) for p in parts)
    if n > max_size:
        raise ValueError(f"frame payload of {n} bytes exceeds the limit of {max_size} bytes")
    return b"".join((_HEADER.pack(n), *parts))


class FrameDecoder:
    """Incremental decoder: ``feed()`` bytes in any split, get complete frames back.

    Never holds more than ``HEADER_SIZE + max_frame_size`` bytes: input is consumed piece
    by piece and only the current, incomplete frame is buffered. A header announcing more
    than ``max_frame_size`` raises ``DecodeError`` immediately; after any ``DecodeError``
    the decoder is failed and every later call raises ``DecodeError`` too (the stream is
    out of sync and must be dropped). Frames completed earlier in the same ``feed()``
    call as the error are discarded with it.

    At the end of input call :meth:`close`: it raises ``DecodeError`` if a frame was cut
    off (``at_boundary`` is False).
    """

    __slots__ = ("_max", "_header", "_need", "_body", "_failed")

    def __init__(self, max_frame_size: int) -> None:
        self._max = _check_limit(max_frame_size)
        self._header = bytearray()  # 0-3 header bytes of the next frame
        self._need: int | None = None  # payload length of the current frame, once known
        self._body = bytearray()  # payload bytes received so far
        self._failed = False

    @property
    def max_frame_size(self) -> int:
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes held for the incomplete frame (header and payload)."""
        return len(self._header) + (HEADER_SIZE + len(self._body) if self._need is not None else 0)

    @property
    def at_boundary(self) -> bool:
        """True if no partial frame is buffered (a clean place for the input to end)."""
        return not self._header and self._need is None

    def _fail(self, message: str) -> DecodeError:
        self._failed = True
        self._header.clear()
        self._body = bytearray()
        self._need = None
        return DecodeError(message)

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the frames it completed, in order."""
        if self._failed:
            raise DecodeError("frame decoder already failed; the stream must be dropped")
        view = memoryview(data).cast("B")
        end = len(view)
        pos = 0
        frames: list[bytes] = []
        while pos < end:
            if self._need is None:
                if not self._header and end - pos >= HEADER_SIZE:
                    (length,) = _HEADER.unpack_from(view, pos)
                    pos += HEADER_SIZE
                else:
                    take = min(HEADER_SIZE - len(self._header), end - pos)
                    self._header += view[pos : pos + take]
                    pos += take
                    if len(self._header) < HEADER_SIZE:
                        break
                    (length,) = _HEADER.unpack(self._header)
                    self._header.clear()
                if length > self._max:
                    raise self._fail(f"frame header announces {length} bytes; the limit is {self._max}")
                if not self._body and end - pos >= length:
                    # Fast path: the whole payload is in this piece, no buffering.
                    frames.append(bytes(view[pos : pos + length]))
                    pos += length
                    continue
                self._need = length
            take = min(self._need - len(self._body), end - pos)
            self._body += view[pos : pos + take]
            pos += take
            if len(self._body) == self._need:
                frames.append(bytes(self._body))
                self._body = bytearray()
                self._need = None
        return frames

    def close(self) -> None:
        """Declare end of input: raise ``DecodeError`` if it cut a frame short."""
        if self._failed:
            raise DecodeError("frame decoder already failed; the stream must be dropped")
        if not self.at_boundary:
            if self._need is None:
                msg = f"input ended inside a frame header ({len(self._header)} of {HEADER_SIZE} bytes)"
            else:
                msg = f"input ended inside a frame ({len(self._body)} of {self._need} payload bytes)"
            raise self._fail(msg)


class _ReadStream(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...


class _WriteStream(Protocol):
    async def write(self, data: bytes) -> None: ...


def _is_eof(exc: BaseException) -> bool:
    # libp2p's StreamEOF (libp2p/network/stream/exceptions.py) subclasses EOFError; the
    # raw muxed-stream EOF (MuxedStreamEOF) does as well. Matching on EOFError keeps this
    # module importable without libp2p and works for both layers.
    return isinstance(exc, EOFError)


async def _read_exactly(stream: _ReadStream, n: int, what: str, *, first: bool) -> bytes | None:
    """Read exactly ``n`` bytes. At EOF before any byte: None if ``first``, else DecodeError."""
    buf = bytearray()
    while len(buf) < n:
        want = min(n - len(buf), _READ_CHUNK)
        try:
            chunk = await stream.read(want)
        except Exception as exc:
            if not _is_eof(exc):
                raise
            chunk = b""
        if not chunk:  # EOF (libp2p raises StreamEOF; other streams may return b"")
            if first and not buf:
                return None
            raise DecodeError(f"stream ended inside a frame {what} ({len(buf)} of {n} bytes)")
        if len(chunk) > want:
            raise DecodeError(f"stream returned {len(chunk)} bytes when {want} were requested")
        buf += chunk
    return bytes(buf)


async def read_frame(stream: _ReadStream, max_size: int) -> bytes | None:
    """Read one frame from a libp2p stream.

    Returns the payload, or ``None`` if the stream ended cleanly before the frame began
    (EOF between frames). Raises ``DecodeError`` if the header announces more than
    ``max_size`` bytes (nothing of the payload is read) or if the stream ends inside the
    header or the payload. Stream errors other than EOF (e.g. libp2p ``StreamReset``)
    propagate unchanged. No timeout: wrap in ``trio.fail_after`` as needed.
    """
    _check_limit(max_size)
    header = await _read_exactly(stream, HEADER_SIZE, "header", first=True)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > max_size:
        raise DecodeError(f"frame header announces {length} bytes; the limit is {max_size}")
    if length == 0:
        return b""
    payload = await _read_exactly(stream, length, "payload", first=False)
    assert payload is not None  # first=False never returns None
    return payload


class FrameReader:
    """Frames from a stream that carries nothing but frames, read ahead in large pieces.

    Unlike :func:`read_frame` (which never reads past the frame it returns), every
    ``stream.read`` asks for up to ``read_size`` bytes and the bytes go through a
    :class:`FrameDecoder`: a burst of frames costs a few large reads instead of several
    small ones per frame (on Yamux each read also sends a window update). Bounded: it holds
    the complete frames of one read (at most ``read_size`` bytes) plus one incomplete frame
    (at most ``max_size`` payload bytes, rejected from its header if larger). Errors are
    those of :func:`read_frame`; no timeout of its own.
    """

    __slots__ = ("_stream", "_decoder", "_read_size", "_ready", "_eof")

    def __init__(self, stream: _ReadStream, max_size: int, read_size: int = _READ_CHUNK) -> None:
        if read_size < 1:
            raise ValueError("read_size must be positive")
        self._stream = stream
        self._decoder = FrameDecoder(max_size)
        self._read_size = read_size
        self._ready: list[bytes] = []
        self._eof = False

    async def read(self) -> bytes | None:
        """The next frame's payload, or None at a clean end of the stream."""
        while not self._ready:
            if self._eof:
                return None
            try:
                data = await self._stream.read(self._read_size)
            except Exception as exc:
                if not _is_eof(exc):
                    raise
                data = b""
            if not data:
                self._eof = True
                try:
                    self._decoder.close()
                except DecodeError as exc:
                    raise DecodeError(f"stream {str(exc).removeprefix('input ')}") from None
                return None
            if len(data) > self._read_size:
                raise DecodeError(f"stream returned {len(data)} bytes when {self._read_size} were requested")
            self._ready = self._decoder.feed(data)
            self._ready.reverse()
        return self._ready.pop()


async def write_frame(stream: _WriteStream, payload: bytes, max_size: int = MAX_ENCODABLE) -> None:
    """Write ``payload`` as one frame (a single ``stream.write`` of header + payload).

    Raises ``ValueError`` if ``payload`` exceeds ``max_size``.
    """
    await stream.write(encode_frame(payload, max_size))


class FrameWriter:
    """Frames to a stream, coalesced and written in pieces of exactly ``piece_size`` bytes.

    Writes of a size chosen for the transport underneath (``libp2p_compat.WRITE_SIZE``: one
    Yamux frame of whole Noise messages), where one write per frame would end each frame with a
    short muxer frame (a chunk of 256 KiB and a little more). Holds less than ``piece_size``
    bytes between calls; call :meth:`flush` after the last frame.
    """

    __slots__ = ("_stream", "_max", "_piece", "_buf")

    def __init__(self, stream: _WriteStream, max_size: int, piece_size: int) -> None:
        if piece_size < 1:
            raise ValueError("piece_size must be positive")
        self._stream = stream
        self._max = _check_limit(max_size)
        self._piece = piece_size
        self._buf = bytearray()

    async def write(self, parts: "tuple[bytes, ...] | list[bytes]") -> None:
        """Add one frame whose payload is the concatenation of ``parts``; write every full piece.

        Raises ``ValueError`` if the payload exceeds ``max_size`` (nothing is added then)."""
        n = sum(len(p) for p in parts)
        if n > self._max:
            raise ValueError(f"frame payload of {n} bytes exceeds the limit of {self._max} bytes")
        buf = self._buf
        buf += _HEADER.pack(n)
        for part in parts:
            buf += part
        piece = self._piece
        if len(buf) < piece:
            return
        full = len(buf) - len(buf) % piece
        view = memoryview(buf)
        try:
            pieces = [bytes(view[i:i + piece]) for i in range(0, full, piece)]
        finally:
            view.release()
        del buf[:full]
        for data in pieces:
            await self._stream.write(data)

    async def flush(self) -> None:
        """Write what is left (less than one piece)."""
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            await self._stream.write(data)
