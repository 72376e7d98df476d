"""The node's home folder: identity key, config, content store. Created 0700."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trust.errors import ConfigError
from trust.localfs import check_private_dir

KEY_FILE = "identity.key"
CONFIG_FILE = "config.toml"
STORE_DIR = "store"


def resolve_home(option: str | None) -> Path:
    if option:
        return Path(option).expanduser()
    env = os.environ.get("VOUCHNET_HOME")
    return Path(env).expanduser() if env else Path.home() / ".vouchnet"


@dataclass(frozen=True)
class Home:
    path: Path

    @property
    def key_file(self) -> Path:
        return self.path / KEY_FILE

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def store_dir(self) -> Path:
        return self.path / STORE_DIR

    def create(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)

    def require(self) -> None:
        """Fail with the next step to take when the home folder is missing or unsafe."""
        if not self.path.is_dir():
            raise ConfigError(f"vouchnet home {self.path} does not exist; run 'vouchnet --home {self.path} init' first")
        check_private_dir(self.path, "vouchnet home", ConfigError)
