"""Tests for overlay.wire.protocol: the strict message codec and the sans-IO exchange state machines."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overlay.wire.protocol import (
    CHUNK_HEADER_SIZE,
    MAX_CHUNKS_PER_REQUEST,
    MAX_ERROR_SIZE,
    MAX_ERROR_MESSAGE,
    MAX_MESSAGE,
    MAX_PROOF_HASHES,
    MAX_REQUEST,
    PROTOCOL_ID,
    Chunk,
    ChunkReceived,
    ClientExchange,
    Done,
    Error,
    ErrorCode,
    GetChunks,
    GetManifest,
    ManifestMsg,
    ManifestReceived,
    MessageType,
    ProtocolViolation,
    RemoteError,
    ServerExchange,
    decode,
    encode,
)
from trust.errors import DecodeError
from trust.manifest import MAX_CHUNK_SIZE, MAX_MANIFEST, MIN_CHUNK_SIZE, content_id, parse_cid

CID = content_id(b"a signed manifest")
DIGEST = parse_cid(CID)
H = [bytes([i]) * 32 for i in range(MAX_PROOF_HASHES + 1)]
BIG = b"\xab" * MAX_CHUNK_SIZE  # built once: 4 MiB


def hdr(kind: int, version: int = 1) -> bytes:
    return bytes((version, kind))


# --------------------------------------------------------------------------- layout and round trip


def test_constants():
    assert PROTOCOL_ID == "/vouchnet/content/1.0.0"
    assert CHUNK_HEADER_SIZE == len(encode(Chunk(7, (), b"x"))) - 1 == 7
    assert MAX_ERROR_SIZE == len(encode(Error(ErrorCode.BUSY, "x" * MAX_ERROR_MESSAGE))) == 259
    assert MAX_MESSAGE == 2 + 4 + 1 + 64 * 32 + MAX_CHUNK_SIZE
    assert MAX_MESSAGE == len(encode(Chunk(2**32 - 1, tuple(H[:64]), BIG)))
    assert MAX_REQUEST == max(len(encode(GetManifest(CID))), len(encode(GetChunks(DIGEST, 0, 1)))) == 59
    assert issubclass(ProtocolViolation, DecodeError)
    assert [int(c) for c in ErrorCode] == [1, 2, 3, 4, 5]


def test_exact_layouts():
    assert encode(GetManifest(CID)) == b"\x01\x01" + CID.encode()
    assert encode(ManifestMsg(b"m")) == b"\x01\x02m"
    assert encode(GetChunks(DIGEST, 0x01020304, 0x0010)) == b"\x01\x03" + DIGEST + b"\x01\x02\x03\x04\x00\x10"
    assert encode(Chunk(0x0A0B0C0D, (H[1], H[2]), b"xyz")) == b"\x01\x04\x0a\x0b\x0c\x0d\x02" + H[1] + H[2] + b"xyz"
    assert encode(Error(ErrorCode.DENIED, "nö")) == b"\x01\x05\x04" + "nö".encode()
    assert encode(Error(ErrorCode.NOT_FOUND)) == b"\x01\x05\x01"


VALID = [
    GetManifest(CID),
    ManifestMsg(b"x"),
    ManifestMsg(bytes(range(256)) * 8),  # exactly MAX_MANIFEST
    GetChunks(DIGEST, 0, 1),
    GetChunks(DIGEST, 7, MAX_CHUNKS_PER_REQUEST),
    GetChunks(DIGEST, 2**32 - MAX_CHUNKS_PER_REQUEST, MAX_CHUNKS_PER_REQUEST),
    Chunk(0, (), b"\x00"),
    Chunk(5, (H[3],), b"data"),
    Chunk(2**32 - 1, tuple(H[:MAX_PROOF_HASHES]), b"d" * 1000),
    Chunk(1, tuple(H[:18]), BIG),
    Error(ErrorCode.NOT_FOUND, ""),
    Error(ErrorCode.BAD_REQUEST, "content has 3 chunks"),
    Error(ErrorCode.INTERNAL, "é" * 128),  # exactly 256 bytes
    Error(ErrorCode.BUSY, "日本語 ok \u200b"),
]


@pytest.mark.parametrize("msg", VALID, ids=repr)
def test_round_trip(msg):
    payload = encode(msg)
    assert type(payload) is bytes
    assert decode(payload) == msg
    assert decode(bytearray(payload)) == msg
    assert decode(memoryview(payload)) == msg
    assert encode(decode(payload)) == payload


def test_decode_releases_its_view():
    buf = bytearray(encode(Chunk(3, (H[1],), b"abc")))
    msg = decode(buf)
    buf.extend(b"more")  # would raise BufferError if decode still held a memoryview
    assert type(msg.data) is bytes and type(msg.proof[0]) is bytes


def test_decoded_chunk_is_independent_of_buffer():
    buf = bytearray(encode(Chunk(3, (), b"abc")))
    msg = decode(buf)
    buf[-1] = ord("z")
    assert msg.data == b"abc"


def test_large_reprs_are_short():
    assert len(repr(Chunk(1, tuple(H[:18]), BIG))) < 100
    assert len(repr(ManifestMsg(b"x" * 2048))) < 100


# --------------------------------------------------------------------------- exact lengths


FIXED = [GetManifest(CID), GetChunks(DIGEST, 9, 3)]
# Variable-length tails are delimited by the frame: these are the shortest/longest forms.
SHORTEST = FIXED + [ManifestMsg(b"m"), Chunk(4, (H[1], H[2]), b"d"), Chunk(0, (), b"d"), Error(ErrorCode.BUSY, "")]
LONGEST = FIXED + [ManifestMsg(b"m" * MAX_MANIFEST), Chunk(4, (H[1],), BIG), Error(ErrorCode.BUSY, "x" * 256)]


@pytest.mark.parametrize("msg", SHORTEST, ids=repr)
def test_every_truncation_fails(msg):
    payload = encode(msg)
    for n in range(len(payload)):
        with pytest.raises(DecodeError):
            decode(payload[:n])


@pytest.mark.parametrize("msg", LONGEST, ids=repr)
@pytest.mark.parametrize("extra", [b"\x00", b"\x01", b"a", b"\xff"])
def test_every_extension_fails(msg, extra):
    with pytest.raises(DecodeError):
        decode(encode(msg) + extra)


def test_chunk_truncation_only_ever_shortens_the_data():
    msg = Chunk(77, (H[1], H[2], H[3]), b"0123456789")
    payload = encode(msg)
    fixed = 2 + 4 + 1 + 3 * 32
    for n in range(len(payload)):
        if n > fixed:
            assert decode(payload[:n]) == Chunk(77, msg.proof, msg.data[: n - fixed])
        else:
            with pytest.raises(DecodeError):
                decode(payload[:n])


# --------------------------------------------------------------------------- header


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version(version):
    for msg in SHORTEST:
        payload = bytearray(encode(msg))
        payload[0] = version
        with pytest.raises(DecodeError, match=f"unsupported protocol version {version}"):
            decode(bytes(payload))


@pytest.mark.parametrize("kind", [0, 6, 7, 128, 255])
def test_unknown_type(kind):
    with pytest.raises(DecodeError, match=f"unknown message type {kind}"):
        decode(hdr(kind) + CID.encode())


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x02"])
def test_no_header(payload):
    with pytest.raises(DecodeError):
        decode(payload)


def test_body_of_another_type_is_rejected():
    # A GET_CHUNKS body (38 bytes) labelled GET_MANIFEST, and vice versa.
    with pytest.raises(DecodeError):
        decode(hdr(MessageType.GET_MANIFEST) + encode(GetChunks(DIGEST, 0, 1))[2:])
    with pytest.raises(DecodeError):
        decode(hdr(MessageType.GET_CHUNKS) + CID.encode())


# --------------------------------------------------------------------------- field bounds on the wire


def get_chunks_bytes(start: int, count: int) -> bytes:
    return hdr(3) + DIGEST + struct.pack(">IH", start, count)


def chunk_bytes(index: int, proof_len: int, n_hashes: int, data: bytes) -> bytes:
    return hdr(4) + struct.pack(">IB", index, proof_len) + b"".join(H[:n_hashes]) + data


@pytest.mark.parametrize("count", [0, 17, 0xFFFF])
def test_count_out_of_range(count):
    with pytest.raises(DecodeError, match="chunk count"):
        decode(get_chunks_bytes(0, count))
    with pytest.raises(ValueError):
        GetChunks(DIGEST, 0, count)


def test_count_bounds_accepted():
    assert decode(get_chunks_bytes(0, 1)).count == 1
    assert decode(get_chunks_bytes(0, 16)).count == 16


def test_range_past_last_index():
    with pytest.raises(DecodeError):
        decode(get_chunks_bytes(2**32 - 1, 2))
    assert decode(get_chunks_bytes(2**32 - 1, 1)).start == 2**32 - 1


def test_proof_len_65():
    with pytest.raises(DecodeError, match="CHUNK proof has 65 hashes"):
        decode(chunk_bytes(0, 65, 65, b"data"))
    with pytest.raises(DecodeError):
        decode(chunk_bytes(0, 255, 0, b"data"))
    with pytest.raises(ValueError):
        Chunk(0, tuple(H[:65]), b"data")


def test_proof_len_64_accepted():
    assert len(decode(chunk_bytes(0, 64, 64, b"data")).proof) == 64


def test_chunk_data_empty():
    with pytest.raises(DecodeError):
        decode(chunk_bytes(0, 0, 0, b""))
    with pytest.raises(DecodeError):
        decode(chunk_bytes(0, 2, 2, b""))
    with pytest.raises(ValueError):
        Chunk(0, (), b"")


def test_chunk_data_too_large():
    with pytest.raises(DecodeError, match="limit"):
        decode(chunk_bytes(0, 1, 1, BIG + b"x"))
    with pytest.raises(ValueError):
        Chunk(0, (), BIG + b"x")


def test_chunk_proof_shorter_than_announced():
    with pytest.raises(DecodeError, match="too short for 3 proof hashes"):
        decode(chunk_bytes(0, 3, 2, b""))  # 64 bytes where 96 + data were announced
    with pytest.raises(DecodeError, match="too short for 3 proof hashes"):
        decode(chunk_bytes(0, 3, 3, b""))


def test_manifest_bounds():
    with pytest.raises(DecodeError):
        decode(hdr(2))
    with pytest.raises(DecodeError, match="limit"):
        decode(hdr(2) + b"m" * (MAX_MANIFEST + 1))
    for bad in (b"", b"m" * (MAX_MANIFEST + 1)):
        with pytest.raises(ValueError):
            ManifestMsg(bad)


def test_error_text_257_bytes():
    with pytest.raises(DecodeError, match="limit"):
        decode(hdr(5) + b"\x01" + b"x" * 257)
    with pytest.raises(DecodeError):
        decode(hdr(5) + b"\x01" + "é".encode() * 128 + b"x")
    with pytest.raises(ValueError):
        Error(ErrorCode.BUSY, "x" * 257)
    with pytest.raises(ValueError):
        Error(ErrorCode.BUSY, "é" * 128 + "x")


@pytest.mark.parametrize("raw", [b"\xff", b"abc\x80", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"])
def test_error_text_invalid_utf8(raw):
    with pytest.raises(DecodeError, match="UTF-8"):
        decode(hdr(5) + b"\x01" + raw)


@pytest.mark.parametrize("ch", ["\x00", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"])
def test_error_text_control_chars(ch):
    with pytest.raises(DecodeError, match="control character"):
        decode(hdr(5) + b"\x01" + f"bad{ch}text".encode())
    with pytest.raises(ValueError):
        Error(ErrorCode.BUSY, f"bad{ch}text")


def test_error_text_lone_surrogate_not_constructible():
    with pytest.raises(ValueError):
        Error(ErrorCode.BUSY, "\ud800")


@pytest.mark.parametrize("code", [0, 6, 255])
def test_unknown_error_code(code):
    with pytest.raises(DecodeError, match=f"unknown error code {code}"):
        decode(hdr(5) + bytes([code]) + b"x")
    with pytest.raises(ValueError):
        Error(code, "x")


def test_error_from_text_always_valid():
    e = Error.from_text(ErrorCode.BAD_REQUEST, "line\nbreak\x85" + "€" * 200 + "\ud800")
    assert e.code is ErrorCode.BAD_REQUEST
    assert "\n" not in e.message and len(e.message.encode()) <= MAX_ERROR_MESSAGE
    assert decode(encode(e)) == e
    assert Error.from_text(1, "fine").message == "fine"


BAD_CIDS = [
    CID.upper().encode(),  # not lowercase
    ("a" + CID[1:]).encode(),  # wrong multibase prefix
    (CID[:-1] + "1").encode(),  # not base32
    CID[:-2].encode() + "é".encode(),  # non-ASCII
    CID.encode()[:-1] + b"\x00",
    b" " * 57,
    ("b" + base64.b32encode(b"\x00\x12\x20" + DIGEST).decode().lower()).encode(),  # wrong CID version
    ("b" + base64.b32encode(b"\x01\x12\x21" + DIGEST).decode().lower()).encode(),  # wrong digest length byte
]


@pytest.mark.parametrize("raw", BAD_CIDS)
def test_bad_cid(raw):
    assert len(raw) == 57
    with pytest.raises(DecodeError):
        decode(hdr(1) + raw)
    with pytest.raises(ValueError):
        GetManifest(raw.decode("latin-1"))


@pytest.mark.parametrize("raw", [CID.encode()[:-1], CID.encode() + b"a", b""])
def test_cid_wrong_length(raw):
    with pytest.raises(DecodeError, match="GET_MANIFEST is .* bytes, expected 59"):
        decode(hdr(1) + raw)


def test_cid_not_ascii():
    with pytest.raises(DecodeError, match="not ASCII"):
        decode(hdr(1) + CID[:-2].encode() + "é".encode())


def test_constructor_type_checks():
    with pytest.raises(TypeError):
        Chunk(True, (), b"x")
    with pytest.raises(TypeError):
        Chunk(0, H[1], b"x")  # bytes is not a proof
    with pytest.raises(TypeError):
        Chunk(0, (), "text")
    with pytest.raises(ValueError):
        Chunk(0, (b"short",), b"x")
    with pytest.raises(ValueError):
        Chunk(-1, (), b"x")
    with pytest.raises(ValueError):
        Chunk(2**32, (), b"x")
    with pytest.raises(ValueError):
        GetChunks(DIGEST[:31], 0, 1)
    with pytest.raises(TypeError):
        GetManifest(CID.encode())
    with pytest.raises(TypeError):
        Error(ErrorCode.BUSY, b"bytes")
    with pytest.raises(TypeError):
        encode(object())
    # Lists and bytearrays are normalised into the frozen, hashable form.
    c = Chunk(0, [bytearray(H[1])], bytearray(b"x"))
    assert c == Chunk(0, (H[1],), b"x") and type(c.proof) is tuple and type(c.data) is bytes
    hash(c)


# --------------------------------------------------------------------------- fuzz


def _check_any(payload: bytes) -> None:
    try:
        msg = decode(payload)
    except DecodeError:
        return
    assert encode(msg) == payload


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(payload):
    _check_any(payload)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5), st.binary(max_size=300))
def test_fuzz_valid_header(kind, body):
    _check_any(hdr(kind) + body)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([GetManifest(CID), GetChunks(DIGEST, 3, 2), ManifestMsg(b"mm"), Chunk(1, (H[1],), b"ab"),
                        Error(ErrorCode.DENIED, "no")]),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255), st.sampled_from(["set", "ins", "del"])),
                max_size=4))
def test_fuzz_mutations(msg, edits):
    payload = bytearray(encode(msg))
    for pos, value, op in edits:
        pos %= len(payload) + 1
        if op == "ins":
            payload.insert(pos, value)
        elif pos < len(payload):
            if op == "set":
                payload[pos] = value
            else:
                del payload[pos]
    _check_any(bytes(payload))


messages = st.one_of(
    st.just(GetManifest(CID)),
    st.builds(ManifestMsg, st.binary(min_size=1, max_size=MAX_MANIFEST)),
    st.builds(GetChunks, st.binary(min_size=32, max_size=32), st.integers(0, 2**32 - 16),
              st.integers(1, MAX_CHUNKS_PER_REQUEST)),
    st.builds(Chunk, st.integers(0, 2**32 - 1),
              st.lists(st.binary(min_size=32, max_size=32), max_size=MAX_PROOF_HASHES).map(tuple),
              st.binary(min_size=1, max_size=300)),
    st.builds(Error, st.sampled_from(list(ErrorCode)),
              st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=64)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_fuzz_round_trip(msg):
    assert decode(encode(msg)) == msg


# --------------------------------------------------------------------------- client exchange


def chunk(i: int, data: bytes = b"data") -> bytes:
    return encode(Chunk(i, (H[i % 8],), data))


def error(code=ErrorCode.NOT_FOUND, text="nope") -> bytes:
    return encode(Error(code, text))


def test_manifest_happy_path():
    ex = ClientExchange.manifest(CID)
    assert ex.request_bytes() == encode(GetManifest(CID)) and ex.cid == CID
    assert not ex.complete
    assert ex.receive(encode(ManifestMsg(b"signed"))) == ManifestReceived(b"signed")
    assert ex.complete
    assert ex.end_of_stream() == Done()
    assert ex.complete


def test_manifest_remote_error():
    ex = ClientExchange.manifest(CID)
    assert ex.receive(error(ErrorCode.NOT_FOUND, "no such content")) == RemoteError(ErrorCode.NOT_FOUND,
                                                                                     "no such content")
    assert not ex.complete
    assert ex.end_of_stream() is None


def test_chunks_happy_path():
    ex = ClientExchange.chunks(CID, 10, 3)
    assert decode(ex.request_bytes()) == GetChunks(DIGEST, 10, 3)
    events = [ex.receive(chunk(i, bytes([i]))) for i in (10, 11, 12)]
    assert events == [ChunkReceived(i, (H[i % 8],), bytes([i])) for i in (10, 11, 12)]
    assert ex.complete
    assert ex.end_of_stream() == Done()


def test_chunks_error_ends_early():
    ex = ClientExchange.chunks(CID, 0, 4)
    ex.receive(chunk(0))
    assert ex.receive(error(ErrorCode.INTERNAL, "chunk unavailable")) == RemoteError(ErrorCode.INTERNAL,
                                                                                      "chunk unavailable")
    assert ex.end_of_stream() is None


def test_chunks_of_one():
    ex = ClientExchange(GetChunks(DIGEST, 0, 1))
    assert ex.cid == CID
    ex.receive(chunk(0))
    assert ex.end_of_stream() == Done()


def violation(ex: ClientExchange, payload: bytes | None, *words: str) -> None:
    with pytest.raises(ProtocolViolation) as info:
        ex.end_of_stream() if payload is None else ex.receive(payload)
    for w in words:
        assert w in str(info.value)
    # The exchange is failed now: every further call raises.
    for call in (lambda: ex.receive(chunk(0)), ex.end_of_stream, ex.request_bytes):
        with pytest.raises(ProtocolViolation, match="already failed"):
            call()


def test_out_of_order_chunk():
    ex = ClientExchange.chunks(CID, 0, 4)
    ex.receive(chunk(0))
    violation(ex, chunk(2), "expected CHUNK 1", "got CHUNK 2", "out of order")


def test_unrequested_index_after_range():
    ex = ClientExchange.chunks(CID, 4, 2)
    violation(ex, chunk(6), "expected CHUNK 4", "got CHUNK 6", "unrequested")


def test_unrequested_index_before_range():
    ex = ClientExchange.chunks(CID, 4, 2)
    violation(ex, chunk(3), "expected CHUNK 4", "got CHUNK 3", "unrequested")


def test_duplicate_chunk():
    ex = ClientExchange.chunks(CID, 0, 3)
    ex.receive(chunk(0))
    ex.receive(chunk(1))
    violation(ex, chunk(1), "expected CHUNK 2", "got CHUNK 1", "duplicate")


def test_too_many_chunks():
    ex = ClientExchange.chunks(CID, 0, 2)
    ex.receive(chunk(0))
    ex.receive(chunk(1))
    violation(ex, chunk(2), "expected end of stream", "got CHUNK 2")


def test_message_after_manifest():
    ex = ClientExchange.manifest(CID)
    ex.receive(encode(ManifestMsg(b"s")))
    violation(ex, encode(ManifestMsg(b"s")), "expected end of stream after MANIFEST", "got MANIFEST")


def test_error_after_done():
    ex = ClientExchange.chunks(CID, 0, 1)
    ex.receive(chunk(0))
    violation(ex, error(), "expected end of stream", "got ERROR NOT_FOUND")


@pytest.mark.parametrize("late", [chunk(1), error(), encode(ManifestMsg(b"s"))])
def test_message_after_remote_error(late):
    ex = ClientExchange.chunks(CID, 0, 3)
    ex.receive(chunk(0))
    ex.receive(error(ErrorCode.BUSY, "busy"))
    violation(ex, late, "expected end of stream after ERROR")


@pytest.mark.parametrize("wrong", [encode(ManifestMsg(b"s")), encode(GetChunks(DIGEST, 0, 1)),
                                   encode(GetManifest(CID))])
def test_wrong_type_in_chunk_exchange(wrong):
    ex = ClientExchange.chunks(CID, 0, 2)
    violation(ex, wrong, "expected CHUNK 0 or ERROR", "got")


@pytest.mark.parametrize("wrong", [chunk(0), encode(GetManifest(CID))])
def test_wrong_type_in_manifest_exchange(wrong):
    ex = ClientExchange.manifest(CID)
    violation(ex, wrong, "expected MANIFEST or ERROR", "got")


def test_eof_before_manifest():
    violation(ClientExchange.manifest(CID), None, "end of stream before MANIFEST")


def test_eof_before_all_chunks():
    ex = ClientExchange.chunks(CID, 5, 3)
    ex.receive(chunk(5))
    violation(ex, None, "end of stream after 1 of 3 chunks", "expected CHUNK 6")


def test_eof_before_any_chunk():
    violation(ClientExchange.chunks(CID, 0, 2), None, "after 0 of 2 chunks")


def test_malformed_payload_fails_exchange():
    ex = ClientExchange.chunks(CID, 0, 2)
    with pytest.raises(DecodeError, match="unsupported protocol version 9"):
        ex.receive(b"\x09" + chunk(0)[1:])
    with pytest.raises(ProtocolViolation, match="already failed: unsupported protocol version 9"):
        ex.receive(chunk(0))


def test_message_after_end_of_stream():
    ex = ClientExchange.chunks(CID, 0, 1)
    ex.receive(chunk(0))
    ex.end_of_stream()
    violation(ex, chunk(1), "after the end of the stream")


def test_end_of_stream_twice():
    ex = ClientExchange.manifest(CID)
    ex.receive(error())
    assert ex.end_of_stream() is None
    violation(ex, None, "twice")


def test_client_rejects_bad_arguments():
    with pytest.raises(ValueError):
        ClientExchange.manifest("not a cid")
    with pytest.raises(ValueError):
        ClientExchange.chunks("not a cid", 0, 1)
    with pytest.raises(ValueError):
        ClientExchange.chunks(CID, 0, 17)
    with pytest.raises(TypeError):
        ClientExchange(ManifestMsg(b"x"))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 20), st.integers(1, 16), st.lists(st.integers(0, 40), max_size=20))
def test_chunk_order_is_enforced_exactly(start, count, indexes):
    """The exchange accepts a sequence of CHUNKs iff it is a prefix of start, start+1, ..."""
    expected = list(range(start, start + count))
    ex = ClientExchange.chunks(CID, start, count)
    for n, i in enumerate(indexes):
        if n < count and i == expected[n]:
            assert ex.receive(chunk(i)).index == i
        else:
            with pytest.raises(ProtocolViolation):
                ex.receive(chunk(i))
            return
    received = len(indexes)
    if received == count:
        assert ex.end_of_stream() == Done()
    else:
        with pytest.raises(ProtocolViolation):
            ex.end_of_stream()


# --------------------------------------------------------------------------- server exchange


@pytest.mark.parametrize("request_msg", [GetManifest(CID), GetChunks(DIGEST, 3, 16)])
def test_server_receives_request(request_msg):
    server = ServerExchange()
    assert server.receive_request(encode(request_msg)) == request_msg
    assert server.request == request_msg
    with pytest.raises(ProtocolViolation, match="one request per stream"):
        server.receive_request(encode(request_msg))
    with pytest.raises(ProtocolViolation, match="already failed"):
        server.receive_request(encode(request_msg))


@pytest.mark.parametrize("msg", [ManifestMsg(b"s"), Chunk(0, (), b"x"), Error(ErrorCode.BUSY, "")])
def test_server_rejects_responses_as_requests(msg):
    server = ServerExchange()
    with pytest.raises(ProtocolViolation, match="expected GET_MANIFEST or GET_CHUNKS"):
        server.receive_request(encode(msg))
    with pytest.raises(ProtocolViolation, match="already failed"):
        server.receive_request(encode(GetManifest(CID)))


def test_server_malformed_request():
    server = ServerExchange()
    with pytest.raises(DecodeError, match="chunk count"):
        server.receive_request(get_chunks_bytes(0, 0))
    with pytest.raises(ProtocolViolation, match="already failed"):
        server.receive_request(encode(GetManifest(CID)))


def test_server_decode_errors_are_short_ascii():
    """A server echoes str(exc) back in an ERROR: the reasons must always fit one."""
    bad = [get_chunks_bytes(0, 0), hdr(1) + "é".encode() * 28 + b"a", hdr(1) + b"\n" * 57, hdr(9), b"",
           hdr(1) + CID.upper().encode(), encode(ManifestMsg(b"x"))]
    for payload in bad:
        with pytest.raises(DecodeError) as info:
            ServerExchange().receive_request(payload)
        text = str(info.value)
        assert text.isascii() and len(text) <= 200
        Error(ErrorCode.BAD_REQUEST, text)


# --------------------------------------------------------------------------- answer size


@pytest.mark.parametrize("chunks", [1, 2, 3, 16, 17, 33])
@pytest.mark.parametrize("last", [1, 1000, MIN_CHUNK_SIZE])
def test_response_bytes_bounds_every_honest_answer(identity, chunks, last):
    """The client grants a request's stream exactly fetch.response_bytes and never tops it up, so
    no honest answer may be longer: all CHUNK frames with their real proofs, or some of them and
    an ERROR of the longest kind in place of the rest."""
    from overlay.node.fetch import response_bytes
    from overlay.wire.framing import HEADER_SIZE
    from trust.manifest import sign_manifest
    from trust.merkle import MerkleTree, leaf_hash

    size = (chunks - 1) * MIN_CHUNK_SIZE + last
    data = [bytes([i % 256]) * (MIN_CHUNK_SIZE if i < chunks - 1 else last) for i in range(chunks)]
    tree = MerkleTree([leaf_hash(d) for d in data])
    _, _, m = sign_manifest(identity, tree.root(), size, "f", chunk_size=MIN_CHUNK_SIZE)
    frames = [HEADER_SIZE + len(encode(Chunk(i, tuple(tree.inclusion_proof(i)), data[i]))) for i in range(chunks)]
    error = HEADER_SIZE + MAX_ERROR_SIZE
    for start in range(chunks):
        for count in range(1, min(MAX_CHUNKS_PER_REQUEST, chunks - start) + 1):
            grant = response_bytes(m, start, count)
            honest = frames[start:start + count]
            assert sum(honest) <= grant
            assert all(sum(honest[:k]) + error <= grant for k in range(count))
