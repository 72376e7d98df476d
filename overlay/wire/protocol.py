"""The content protocol ``/vouchnet/content/1.0.0``, sans-IO (in the style of h11/wsproto).

Nothing here touches sockets, trio or libp2p: messages are plain frozen dataclasses,
:func:`encode` turns one into the payload of one frame, :func:`decode` turns a frame payload
back into a message, and :class:`ClientExchange` / :class:`ServerExchange` check that the
messages of one request/response exchange (one stream) follow the protocol.

Wire format of every message (one frame payload, integers big-endian)::

    version u8 (= 1) | type u8 | body

    GET_MANIFEST (1)  cid: 57 ASCII bytes (a canonical vouchnet CID)
    MANIFEST     (2)  signed manifest: 1..MAX_MANIFEST bytes (verified by the caller with
                      trust.manifest.open_manifest(signed, expected_cid), not here)
    GET_CHUNKS   (3)  manifest digest: 32 bytes | start u32 | count u16 (1..MAX_CHUNKS_PER_REQUEST)
    CHUNK        (4)  index u32 | proof_len u8 (0..MAX_PROOF_HASHES) | proof_len * 32 bytes
                      | data: 1..MAX_CHUNK_SIZE bytes (the rest of the frame)
    ERROR        (5)  code u8 (ErrorCode) | message: 0..MAX_ERROR_MESSAGE bytes of strict UTF-8
                      without control characters (the rest of the frame)

Decoding is strict: the version, the type and the exact body length are checked, and any
missing or leftover byte, out-of-range field or non-canonical form raises
:class:`~trust.errors.DecodeError`. The variable-length tails (manifest bytes, chunk data,
error text) are delimited by the frame, so a payload decodes to a message exactly when
``encode(decode(payload)) == payload``.

Errors: a peer's bad bytes raise ``DecodeError``; a peer breaking the exchange order raises
:class:`ProtocolViolation` (a ``DecodeError`` too). Building a message from invalid local
values raises ``ValueError`` (or ``TypeError`` for a wrong type): that is our own bug, not
evidence against a peer.
"""
from __future__ import annotations

import enum
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

from trust.errors import DecodeError
from trust.manifest import CID_LEN, MAX_CHUNK_SIZE, MAX_MANIFEST, content_id_from_digest, parse_cid
from trust.merkle import HASH_SIZE

__all__ = [
    "PROTOCOL_ID",
    "VERSION",
    "MAX_CHUNKS_PER_REQUEST",
    "MAX_PROOF_HASHES",
    "MAX_ERROR_MESSAGE",
    "MAX_MESSAGE",
    "MAX_REQUEST",
    "CHUNK_HEADER_SIZE",
    "MAX_ERROR_SIZE",
    "MessageType",
    "ErrorCode",
    "ProtocolViolation",
    "GetManifest",
    "ManifestMsg",
    "GetChunks",
    "Chunk",
    "Error",
    "Message",
    "Request",
    "encode",
    "encode_parts",
    "decode",
    "ManifestReceived",
    "ChunkReceived",
    "Done",
    "RemoteError",
    "Event",
    "ClientExchange",
    "ServerExchange",
]

PROTOCOL_ID = "/vouchnet/content/1.0.0"
VERSION = 1
MAX_CHUNKS_PER_REQUEST = 16
MAX_PROOF_HASHES = 64  # RFC 9162 sizes are u64, so no inclusion proof is longer
MAX_ERROR_MESSAGE = 256
_MAX_U32 = 2**32 - 1

_HEADER_SIZE = 2
_GET_CHUNKS = struct.Struct(">BB32sIH")
_CHUNK_HEADER = struct.Struct(">BBIB")
_CHUNK_FIXED = _CHUNK_HEADER.size - _HEADER_SIZE  # index + proof_len
#: Bytes of a CHUNK payload before its proof hashes (version, type, index, proof_len).
CHUNK_HEADER_SIZE = _CHUNK_HEADER.size
#: The largest ERROR payload.
MAX_ERROR_SIZE = _HEADER_SIZE + 1 + MAX_ERROR_MESSAGE
_GET_MANIFEST_SIZE = _HEADER_SIZE + CID_LEN

#: The largest payload of any message (a CHUNK with a full proof and a maximal chunk): the
#: frame-size limit for reading responses.
MAX_MESSAGE = _HEADER_SIZE + 4 + 1 + MAX_PROOF_HASHES * HASH_SIZE + MAX_CHUNK_SIZE
#: The largest payload of a request: the frame-size limit for a server reading a request.
MAX_REQUEST = max(_GET_MANIFEST_SIZE, _GET_CHUNKS.size)

# Unicode category Cc is exactly C0, DEL and C1.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class MessageType(enum.IntEnum):
    GET_MANIFEST = 1
    MANIFEST = 2
    GET_CHUNKS = 3
    CHUNK = 4
    ERROR = 5


class ErrorCode(enum.IntEnum):
    NOT_FOUND = 1
    BAD_REQUEST = 2
    BUSY = 3
    DENIED = 4
    INTERNAL = 5


class ProtocolViolation(DecodeError):
    """A peer sent a well-formed message that the exchange does not allow at this point."""


# --- field checks (ValueError/TypeError: these guard values we build ourselves) ---------------


def _int(value: object, what: str, lo: int, hi: int) -> int:
    if type(value) is not int and not isinstance(value, enum.IntEnum):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:  # type: ignore[operator]
        raise ValueError(f"{what} {value} is out of range {lo}..{hi}")
    return int(value)  # type: ignore[call-overload]


def _bytes(value: object, what: str, lo: int, hi: int) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, got {type(value).__name__}")
    b = value if type(value) is bytes else bytes(value)
    if not lo <= len(b) <= hi:
        if lo == hi:
            raise ValueError(f"{what} is {len(b)} bytes, expected {lo}")
        raise ValueError(f"{what} is {len(b)} bytes, expected {lo}..{hi}")
    return b


# --- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetManifest:
    """Ask for the signed manifest a content ID names."""

    cid: str

    def __post_init__(self) -> None:
        if not isinstance(self.cid, str):
            raise TypeError(f"cid must be a str, got {type(self.cid).__name__}")
        try:
            parse_cid(self.cid)
        except DecodeError as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class ManifestMsg:
    """The signed manifest bytes (unverified: check with open_manifest(signed, cid))."""

    signed: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "signed", _bytes(self.signed, "signed manifest", 1, MAX_MANIFEST))

    def __repr__(self) -> str:
        return f"ManifestMsg(<{len(self.signed)} bytes>)"


@dataclass(frozen=True, slots=True)
class GetChunks:
    """Ask for chunks start .. start+count-1 of the content whose manifest hashes to digest."""

    digest: bytes
    start: int
    count: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", _bytes(self.digest, "manifest digest", HASH_SIZE, HASH_SIZE))
        _int(self.start, "start index", 0, _MAX_U32)
        _int(self.count, "chunk count", 1, MAX_CHUNKS_PER_REQUEST)
        if self.start + self.count - 1 > _MAX_U32:
            raise ValueError(f"chunks {self.start}..{self.start + self.count - 1} go past the largest index {_MAX_U32}")

    @property
    def cid(self) -> str:
        return content_id_from_digest(self.digest)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk with its RFC 9162 inclusion proof (unverified: the caller checks the proof)."""

    index: int
    proof: tuple[bytes, ...]
    data: bytes

    def __post_init__(self) -> None:
        _int(self.index, "chunk index", 0, _MAX_U32)
        proof = self.proof
        if isinstance(proof, (str, bytes, bytearray, memoryview)) or not isinstance(proof, Sequence):
            raise TypeError(f"proof must be a sequence of hashes, got {type(proof).__name__}")
        if len(proof) > MAX_PROOF_HASHES:
            raise ValueError(f"proof has {len(proof)} hashes, the limit is {MAX_PROOF_HASHES}")
        object.__setattr__(self, "proof", tuple(_bytes(h, f"proof hash {i}", HASH_SIZE, HASH_SIZE)
                                                for i, h in enumerate(proof)))
        object.__setattr__(self, "data", _bytes(self.data, "chunk data", 1, MAX_CHUNK_SIZE))

    def __repr__(self) -> str:
        return f"Chunk(index={self.index}, proof=<{len(self.proof)} hashes>, data=<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class Error:
    """A refusal or failure, with a short human-readable reason."""

    code: ErrorCode
    message: str = ""

    def __post_init__(self) -> None:
        try:
            code = ErrorCode(_int(self.code, "error code", 0, 255))
        except ValueError:
            raise ValueError(f"unknown error code {self.code}") from None
        object.__setattr__(self, "code", code)
        if not isinstance(self.message, str):
            raise TypeError(f"error message must be a str, got {type(self.message).__name__}")
        try:
            n = len(self.message.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("error message is not encodable as UTF-8 (lone surrogate)") from None
        if n > MAX_ERROR_MESSAGE:
            raise ValueError(f"error message is {n} bytes of UTF-8, the limit is {MAX_ERROR_MESSAGE}")
        m = _CONTROL.search(self.message)
        if m:
            raise ValueError(f"error message has control character U+{ord(m.group()):04X} at position {m.start()}")

    @classmethod
    def from_text(cls, code: ErrorCode | int, text: str) -> "Error":
        """An Error carrying any text: control characters become spaces and the text is cut to
        MAX_ERROR_MESSAGE bytes (on a character boundary), so this never raises for a str."""
        text = _CONTROL.sub(" ", text).encode("utf-8", "replace")[:MAX_ERROR_MESSAGE]
        return cls(code, text.decode("utf-8", "ignore"))


Message = Union[GetManifest, ManifestMsg, GetChunks, Chunk, Error]
Request = Union[GetManifest, GetChunks]


def encode(msg: Message) -> bytes:
    """The frame payload for ``msg`` (already validated when it was constructed)."""
    t = type(msg)
    if t is Chunk:
        return b"".join((_CHUNK_HEADER.pack(VERSION, MessageType.CHUNK, msg.index, len(msg.proof)),  # type: ignore[union-attr]
                         *msg.proof, msg.data))  # type: ignore[union-attr]
    if t is GetChunks:
        return _GET_CHUNKS.pack(VERSION, MessageType.GET_CHUNKS, msg.digest, msg.start, msg.count)  # type: ignore[union-attr]
    if t is ManifestMsg:
        return bytes((VERSION, MessageType.MANIFEST)) + msg.signed  # type: ignore[union-attr]
    if t is GetManifest:
        return bytes((VERSION, MessageType.GET_MANIFEST)) + msg.cid.encode("ascii")  # type: ignore[union-attr]
    if t is Error:
        return bytes((VERSION, MessageType.ERROR, msg.code)) + msg.message.encode("utf-8")  # type: ignore[union-attr]
    raise TypeError(f"not a content protocol message: {t.__name__}")


def encode_parts(msg: Message) -> tuple[bytes, ...]:
    """:func:`encode` as pieces whose concatenation is the payload: a CHUNK's data stays a
    separate piece, so a caller adding a frame header copies it once, not twice."""
    if type(msg) is Chunk:
        return (_CHUNK_HEADER.pack(VERSION, MessageType.CHUNK, msg.index, len(msg.proof)),  # type: ignore[union-attr]
                *msg.proof, msg.data)  # type: ignore[union-attr]
    return (encode(msg),)


def decode(payload: bytes | bytearray | memoryview) -> Message:
    """Strictly decode one frame payload; DecodeError says what was wrong."""
    with memoryview(payload) as raw, raw.cast("B") as mv:
        n = len(mv)
        if n < _HEADER_SIZE:
            raise DecodeError(f"message is {n} bytes, shorter than the {_HEADER_SIZE}-byte header")
        if mv[0] != VERSION:
            raise DecodeError(f"unsupported protocol version {mv[0]}")
        kind = mv[1]
        try:
            if kind == MessageType.CHUNK:
                return _decode_chunk(mv)
            if kind == MessageType.GET_CHUNKS:
                if n != _GET_CHUNKS.size:
                    raise DecodeError(f"GET_CHUNKS is {n} bytes, expected {_GET_CHUNKS.size}")
                _, _, digest, start, count = _GET_CHUNKS.unpack(mv)
                return GetChunks(digest, start, count)
            if kind == MessageType.MANIFEST:
                if n == _HEADER_SIZE:
                    raise DecodeError("MANIFEST carries no manifest bytes")
                if n - _HEADER_SIZE > MAX_MANIFEST:
                    raise DecodeError(f"MANIFEST carries {n - _HEADER_SIZE} bytes, the limit is {MAX_MANIFEST}")
                return ManifestMsg(bytes(mv[_HEADER_SIZE:]))
            if kind == MessageType.GET_MANIFEST:
                if n != _GET_MANIFEST_SIZE:
                    raise DecodeError(f"GET_MANIFEST is {n} bytes, expected {_GET_MANIFEST_SIZE}")
                cid = bytes(mv[_HEADER_SIZE:])
                if not cid.isascii():
                    raise DecodeError("GET_MANIFEST content ID is not ASCII")
                return GetManifest(cid.decode("ascii"))
            if kind == MessageType.ERROR:
                if n < _HEADER_SIZE + 1:
                    raise DecodeError("ERROR is missing its code")
                if n - _HEADER_SIZE - 1 > MAX_ERROR_MESSAGE:
                    raise DecodeError(f"ERROR message is {n - _HEADER_SIZE - 1} bytes, the limit is {MAX_ERROR_MESSAGE}")
                try:
                    text = str(mv[_HEADER_SIZE + 1:], "utf-8")
                except UnicodeDecodeError as exc:
                    raise DecodeError(f"ERROR message is not valid UTF-8 (byte {exc.start})") from None
                return Error(mv[_HEADER_SIZE], text)
        except ValueError as exc:  # a field the constructor rejected
            raise DecodeError(f"{MessageType(kind).name}: {exc}") from None
        raise DecodeError(f"unknown message type {kind}")


def _decode_chunk(mv: memoryview) -> Chunk:
    n = len(mv)
    if n < _CHUNK_HEADER.size:
        raise DecodeError(f"CHUNK is {n} bytes, shorter than its {_CHUNK_HEADER.size}-byte header")
    _, _, index, proof_len = _CHUNK_HEADER.unpack_from(mv)
    if proof_len > MAX_PROOF_HASHES:
        raise DecodeError(f"CHUNK proof has {proof_len} hashes, the limit is {MAX_PROOF_HASHES}")
    off = _CHUNK_HEADER.size
    end = off + proof_len * HASH_SIZE
    if n <= end:
        raise DecodeError(f"CHUNK is {n} bytes: too short for {proof_len} proof hashes and at least one data byte")
    if n - end > MAX_CHUNK_SIZE:
        raise DecodeError(f"CHUNK data is {n - end} bytes, the limit is {MAX_CHUNK_SIZE}")
    proof = tuple(bytes(mv[i:i + HASH_SIZE]) for i in range(off, end, HASH_SIZE))
    return Chunk(index, proof, bytes(mv[end:]))  # the one copy of the data


def _describe(msg: Message) -> str:
    if isinstance(msg, Chunk):
        return f"CHUNK {msg.index}"
    if isinstance(msg, Error):
        return f"ERROR {msg.code.name}"
    if isinstance(msg, ManifestMsg):
        return "MANIFEST"
    if isinstance(msg, GetChunks):
        return "GET_CHUNKS"
    return "GET_MANIFEST"


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestReceived:
    signed: bytes

    def __repr__(self) -> str:
        return f"ManifestReceived(<{len(self.signed)} bytes>)"


@dataclass(frozen=True, slots=True)
class ChunkReceived:
    index: int
    proof: tuple[bytes, ...]
    data: bytes

    def __repr__(self) -> str:
        return f"ChunkReceived(index={self.index}, proof=<{len(self.proof)} hashes>, data=<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class Done:
    """Every expected response arrived and then the stream ended cleanly."""


@dataclass(frozen=True, slots=True)
class RemoteError:
    code: ErrorCode
    message: str


Event = Union[ManifestReceived, ChunkReceived, Done, RemoteError]


# --- exchanges --------------------------------------------------------------------------------

_AWAITING = "awaiting responses"
_COMPLETE = "complete"
_ERRORED = "ended by an ERROR"
_CLOSED = "closed"
_FAILED = "failed"


class ClientExchange:
    """The client side of one exchange (one stream): one request, then its responses.

    Send :meth:`request_bytes`, feed every response frame payload to :meth:`receive` (one
    event each: ManifestReceived, ChunkReceived or RemoteError), and call :meth:`end_of_stream`
    at EOF: it returns Done if every expected response came, None if the peer answered with an
    ERROR, and raises ProtocolViolation if the stream ended early. ``complete`` turns true as
    soon as the last expected response is in, for callers that do not wait for EOF.

    Anything the protocol does not allow raises ProtocolViolation (malformed payloads raise
    DecodeError); after any exception the exchange is failed and every later call raises.
    """

    __slots__ = ("request", "cid", "_complete", "_payload", "_next", "_end", "_state", "_failure")

    def __init__(self, request: Request):
        if not isinstance(request, (GetManifest, GetChunks)):
            raise TypeError(f"a request must be GetManifest or GetChunks, got {type(request).__name__}")
        self.request = request
        self.cid = request.cid
        self._payload = encode(request)
        if isinstance(request, GetChunks):
            self._next, self._end = request.start, request.start + request.count
        else:
            self._next = self._end = 0
        self._state = _AWAITING
        self._failure = ""
        self._complete = False

    @classmethod
    def manifest(cls, cid: str) -> "ClientExchange":
        return cls(GetManifest(cid))

    @classmethod
    def chunks(cls, cid: str, start: int, count: int) -> "ClientExchange":
        try:
            digest = parse_cid(cid)
        except DecodeError as exc:
            raise ValueError(str(exc)) from None
        return cls(GetChunks(digest, start, count))

    @property
    def complete(self) -> bool:
        """True once every expected response arrived (and still after the end of the stream)."""
        return self._complete

    def request_bytes(self) -> bytes:
        self._check_usable()
        return self._payload

    def receive(self, payload: bytes | bytearray | memoryview) -> Event:
        self._check_usable()
        if self._state == _CLOSED:
            raise self._fail("a message arrived after the end of the stream")
        try:
            msg = decode(payload)
        except DecodeError as exc:
            self._state, self._failure = _FAILED, str(exc)
            raise
        got = _describe(msg)
        if self._state == _COMPLETE:
            raise self._fail(f"expected end of stream after {self._finished_what()}, got {got}")
        if self._state == _ERRORED:
            raise self._fail(f"expected end of stream after ERROR, got {got}")
        if isinstance(msg, Error):
            self._state = _ERRORED
            return RemoteError(msg.code, msg.message)
        req = self.request
        if isinstance(req, GetManifest):
            if not isinstance(msg, ManifestMsg):
                raise self._fail(f"expected MANIFEST or ERROR, got {got}")
            self._state, self._complete = _COMPLETE, True
            return ManifestReceived(msg.signed)
        if not isinstance(msg, Chunk):
            raise self._fail(f"expected CHUNK {self._next} or ERROR, got {got}")
        if msg.index != self._next:
            if not req.start <= msg.index < self._end:
                why = f"unrequested (chunks {req.start}..{self._end - 1} were requested)"
            elif msg.index < self._next:
                why = "a duplicate"
            else:
                why = "out of order"
            raise self._fail(f"expected CHUNK {self._next}, got CHUNK {msg.index}: {why}")
        self._next += 1
        if self._next == self._end:
            self._state, self._complete = _COMPLETE, True
        return ChunkReceived(msg.index, msg.proof, msg.data)

    def end_of_stream(self) -> Done | None:
        self._check_usable()
        state = self._state
        if state == _CLOSED:
            raise self._fail("end of stream reported twice")
        if state == _AWAITING:
            req = self.request
            if isinstance(req, GetManifest):
                raise self._fail("end of stream before MANIFEST or ERROR")
            raise self._fail(f"end of stream after {self._next - req.start} of {req.count} chunks "
                             f"(expected CHUNK {self._next})")
        self._state = _CLOSED
        return None if state == _ERRORED else Done()

    def _finished_what(self) -> str:
        req = self.request
        return "MANIFEST" if isinstance(req, GetManifest) else f"all {req.count} chunks"

    def _check_usable(self) -> None:
        if self._state == _FAILED:
            raise ProtocolViolation(f"exchange already failed: {self._failure}")

    def _fail(self, message: str) -> ProtocolViolation:
        self._state, self._failure = _FAILED, message
        return ProtocolViolation(message)


class ServerExchange:
    """The server side of one exchange: exactly one request, answered with :func:`encode`d
    responses (MANIFEST or ERROR; or CHUNKs for start, start+1, ... with an ERROR ending them
    early) and then the end of the stream."""

    __slots__ = ("request", "_failure")

    def __init__(self) -> None:
        self.request: Request | None = None
        self._failure = ""

    def receive_request(self, payload: bytes | bytearray | memoryview) -> Request:
        if self._failure:
            raise ProtocolViolation(f"exchange already failed: {self._failure}")
        try:
            if self.request is not None:
                raise ProtocolViolation("a second request arrived; one request per stream")
            msg = decode(payload)
            if not isinstance(msg, (GetManifest, GetChunks)):
                raise ProtocolViolation(f"expected GET_MANIFEST or GET_CHUNKS, got {_describe(msg)}")
        except DecodeError as exc:
            self._failure = str(exc) or type(exc).__name__
            raise
        self.request = msg
        return msg
