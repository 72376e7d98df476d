"""PolicyService.choose_providers: the policy's verdicts and the reputation tiers together."""
from __future__ import annotations

import pytest

from overlay.services.policy import PolicyDenied, PolicyService
from trust.identity import Identity

# D is denied, a, b and c allowed, everyone else (L) limited.
POLICY = """\
[policy]
default = "allow"

[[rule]]
type = "deny_peers"
peers = ["{D}"]
actions = ["choose_provider"]

[[rule]]
type = "allow_peers"
peers = ["{a}", "{b}", "{c}"]
actions = ["choose_provider"]

[[rule]]
type = "rate_limit"
actions = ["choose_provider"]
rate = 1.0
"""
NAMES = "abcDL"


@pytest.fixture
def ids() -> dict[str, str]:
    return {n: Identity.from_seed(bytes([i + 1]) * 32).peer_id for i, n in enumerate(NAMES)}


@pytest.fixture
def svc(tmp_path, ids):
    path = tmp_path / "policy.toml"
    path.write_text(POLICY.format(**ids))
    service = PolicyService(tmp_path, path, explicit=True, rep=None, ledger=None)
    real = service.choose_providers

    def by_name(names, tier=None):  # the tests speak in names
        back = {v: k for k, v in ids.items()}
        t = None if tier is None else (lambda p: tier(back[p]))
        return [back[p] for p in real([ids[n] for n in names], tier=t)]
    service.choose_providers = by_name
    return service


def test_allowed_before_limited_without_tiers(svc):
    assert svc.choose_providers(["L", "a", "D", "b"]) == ["a", "b", "L"]


def test_a_reported_peer_goes_after_a_limited_one(svc):
    reported = {"a"}
    order = svc.choose_providers(["a", "L", "b", "D"], tier=lambda p: int(p in reported))
    assert order == ["b", "L", "a"]


def test_tiers_keep_the_given_order_within_a_verdict(svc):
    order = svc.choose_providers(["c", "b", "a", "L"], tier=lambda p: 0)
    assert order == ["c", "b", "a", "L"]


def test_every_provider_refused(svc):
    with pytest.raises(PolicyDenied, match="refuses every provider"):
        svc.choose_providers(["D"], tier=lambda p: 0)
