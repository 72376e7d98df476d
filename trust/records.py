"""Signing and opening typed records through the envelope, with the signer bound to the record."""
from __future__ import annotations

from typing import Any, ClassVar, Protocol, TypeVar

from trust import encoding
from trust.errors import SignatureError
from trust.signing import Envelope, open_envelope, seal


class Record(Protocol):
    TAG: ClassVar[str]
    VERSION: ClassVar[int]
    MAX_SIZE: ClassVar[int]

    @property
    def signer_peer_id(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, d: Any) -> "Record": ...


R = TypeVar("R", bound=Record)


def sign_record(identity: Any, record: Record) -> bytes:
    """Sign ``record`` with ``identity`` (a trust.identity.Identity); returns envelope bytes."""
    if record.signer_peer_id != identity.peer_id:
        raise SignatureError(
            f"refusing to sign a {record.TAG} record that names {record.signer_peer_id} as its signer "
            f"with the key of {identity.peer_id}"
        )
    env = seal(identity.signing_key, record.TAG, record.VERSION, encoding.encode(record.to_dict()))
    return env.to_bytes()


def open_record(data: bytes, cls: type[R]) -> tuple[R, Envelope]:
    """Verify the signature first, then decode the payload strictly and bind signer to record."""
    env = open_envelope(data, tag=cls.TAG, record_version=cls.VERSION, max_size=cls.MAX_SIZE)
    record = cls.from_dict(encoding.decode(env.payload, cls.MAX_SIZE))
    if record.signer_peer_id != env.signer:
        raise SignatureError(
            f"{cls.TAG} record claims {record.signer_peer_id} as its signer but was signed by {env.signer}"
        )
    return record, env
