"""The command line as a user runs it: real processes, exit codes, messages, files on disk."""
import json
import os
import stat

import pytest

from tests.conftest import run_cli


def test_help_has_examples():
    for cmd in ("init", "id", "share", "verify"):
        out = run_cli(cmd, "--help", check=True).stdout.decode()
        assert "Example" in out, cmd


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    run_cli("init", home=h, check=True)
    return h


def test_init_creates_private_key_and_config(home):
    key = home / "identity.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert (home / "config.toml").exists()


def test_init_refuses_to_overwrite(home):
    before = (home / "identity.key").read_bytes()
    proc = run_cli("init", home=home)
    assert proc.returncode == 1 and b"--force" in proc.stderr
    assert (home / "identity.key").read_bytes() == before
    run_cli("init", "--force", home=home, check=True)
    assert (home / "identity.key").read_bytes() != before


def test_id_json_matches_libp2p(home):
    info = json.loads(run_cli("id", "--json", home=home, check=True).stdout)
    from libp2p.crypto.ed25519 import Ed25519PublicKey
    from libp2p.peer.id import ID
    assert info["peer_id"].startswith("12D3KooW")
    assert ID.from_pubkey(Ed25519PublicKey.from_bytes(bytes.fromhex(info["public_key"]))).to_base58() == info["peer_id"]


def test_share_verify_round_trip(home, tmp_path):
    f = tmp_path / "doc.txt"
    f.write_bytes(os.urandom(700_000))
    info = json.loads(run_cli("share", str(f), "--json", home=home, check=True).stdout)
    assert info["size"] == 700_000 and info["chunks"] == 3 and info["name"] == "doc.txt"
    assert info["media_type"] == "text/plain"
    ok = run_cli("verify", info["cid"], home=home)
    assert ok.returncode == 0 and b"OK" in ok.stdout
    assert run_cli("verify", str(f), home=home).returncode == 0
    data = bytearray(f.read_bytes())
    data[400_000] ^= 1
    f.write_bytes(bytes(data))
    assert run_cli("verify", str(f), "--cid", info["cid"], home=home).returncode == 1
    stored = home / "store" / "data" / f"{info['cid']}.data"
    stored.write_bytes(bytes(data))
    bad = run_cli("verify", info["cid"], "--json", home=home)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["results"][0]["bad_chunks"] == [1]


def test_world_readable_key_refused(home, tmp_path):
    os.chmod(home / "identity.key", 0o644)
    proc = run_cli("id", home=home)
    assert proc.returncode == 1 and b"chmod 600" in proc.stderr
    f = tmp_path / "x"
    f.write_bytes(b"x")
    assert run_cli("share", str(f), home=home).returncode == 1
    assert not any((home / "store" / "data").glob("*")) if (home / "store").exists() else True


def test_passphrase_protection(tmp_path):
    h = tmp_path / "h"
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    os.chmod(pw, 0o600)  # a passphrase file others can read is refused
    run_cli("init", "--passphrase-file", str(pw), home=h, check=True)
    assert b"seed" not in (h / "identity.key").read_bytes()
    f = tmp_path / "f"
    f.write_bytes(b"hello")
    no_pass = run_cli("share", str(f), home=h)
    assert no_pass.returncode == 1 and b"--passphrase-file" in no_pass.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("battery staple\n")
    os.chmod(wrong, 0o600)
    bad = run_cli("--passphrase-file", str(wrong), "share", str(f), home=h)
    assert bad.returncode == 1 and b"wrong passphrase" in bad.stderr
    assert not (h / "store" / "data").exists() or not any((h / "store" / "data").iterdir())
    run_cli("--passphrase-file", str(pw), "share", str(f), home=h, check=True)


def test_missing_home(tmp_path):
    proc = run_cli("id", home=tmp_path / "nowhere")
    assert proc.returncode == 1 and b"vouchnet" in proc.stderr and b"init" in proc.stderr
    assert not (tmp_path / "nowhere").exists()


def test_bad_cid_and_missing_content(home):
    proc = run_cli("verify", "not-a-cid", home=home)
    assert proc.returncode == 1 and b"content ID" in proc.stderr
    missing = "b" + "a" * 56
    proc = run_cli("verify", missing, home=home)
    assert proc.returncode == 1
