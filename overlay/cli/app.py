"""The `vouchnet` command line: the root group, its context object and output helpers.

The commands live one group per module beside this one (``overlay.cli.local``, ``node``,
``ledger``, ``trust``, ``policy``, ``sim``); ``overlay.cli`` imports them so they register."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from overlay.home import Home, resolve_home
from overlay.store import ContentStore
from trust import keyfile
from trust.errors import VouchnetError
from trust.identity import Identity


class Ctx:
    def __init__(self, home: Home, passphrase_file: Path | None):
        self.home = home
        self.passphrase_file = passphrase_file

    def passphrase(self) -> bytes | None:
        return keyfile.read_passphrase_file(self.passphrase_file) if self.passphrase_file else None

    def identity(self) -> Identity:
        self.home.require()
        return keyfile.load_identity(self.home.key_file, self.passphrase())

    def store(self) -> ContentStore:
        self.home.require()
        return ContentStore(self.home.store_dir)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


class VouchnetGroup(click.Group):
    """Turns vouchnet errors into one clear line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VouchnetError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), 2)


@click.group(cls=VouchnetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", "home", type=click.Path(file_okay=False), default=None,
              help="Home folder (default: $VOUCHNET_HOME or ~/.vouchnet).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="VOUCHNET_PASSPHRASE_FILE", help="File holding the key passphrase.")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
@click.option("--log-json", is_flag=True, help="Log as JSON lines.")
@click.version_option(package_name="vouchnet")
@click.pass_context
def main(ctx: click.Context, home: str | None, passphrase_file: Path | None, verbose: int, log_json: bool) -> None:
    """vouchnet: signed identities, Merkle-verified content and auditable reputation for P2P networks.

    \b
    Start here:
      vouchnet --home ./alice init
      vouchnet --home ./alice id
      vouchnet --home ./alice share report.pdf
      vouchnet --home ./alice verify <CID>
    """
    from overlay.logs import setup_logging
    setup_logging(verbose, log_json)
    ctx.obj = Ctx(Home(resolve_home(home)), passphrase_file)


def progress(total: int, label: str):
    """A rich progress bar on a terminal, nothing otherwise."""
    from contextlib import nullcontext
    if not sys.stderr.isatty():
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
    prog = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    console=Console(stderr=True), transient=True)

    class Bar:
        def __enter__(self):
            prog.__enter__()
            self.task = prog.add_task(label, total=total or None)
            return lambda done, total=None: prog.update(self.task, completed=done, total=total)

        def __exit__(self, *exc):
            return prog.__exit__(*exc)
    return Bar()
