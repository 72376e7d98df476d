"""Error types. Each message says what was wrong and, where it helps, what to do."""


class VouchnetError(Exception):
    """Base class for every error vouchnet reports to a user."""


class DecodeError(VouchnetError):
    """Bytes from outside did not decode strictly (wrong type, size, form or encoding)."""


class SignatureError(VouchnetError):
    """A signature did not verify, or was made by a key other than the claimed one."""


class ProofError(VouchnetError):
    """A Merkle inclusion or consistency proof did not verify."""


class KeyFileError(VouchnetError):
    """The identity key file is missing, unsafe, unreadable or locked with another passphrase."""


class StoreError(VouchnetError):
    """The content store refused an operation (unknown content, bad chunk, I/O failure)."""


class ConfigError(VouchnetError):
    """A configuration file or home folder is missing or invalid."""
