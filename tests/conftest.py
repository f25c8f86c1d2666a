"""Shared fixtures: one deployed world per chain kind, rolled back to a snapshot per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.chain.backends import anvil_binary
from gateway.core.errors import ChainError
from tests.support import World, anvil_required, make_chain


def _anvil_available() -> bool:
    try:
        anvil_binary()
        return True
    except ChainError:
        return False


@pytest.fixture(scope="module", params=["embedded", "anvil"])
def world_base(request: pytest.FixtureRequest) -> Iterator[World]:
    kind = request.param
    if kind == "anvil" and not _anvil_available():
        if anvil_required():
            pytest.fail("anvil is missing in CI: scripts/bootstrap should have installed it with npm ci")
        pytest.skip("anvil not installed (run scripts/bootstrap)")
    chain = make_chain(kind)
    try:
        yield World.create(chain)
    finally:
        chain.close()


@pytest.fixture
def world(world_base: World) -> Iterator[World]:
    """The deployed world, reverted to its state before the test afterwards."""
    snapshot = world_base.chain.snapshot()
    admin_nonce, relayer_nonce = world_base.admin._nonce, world_base.relayer._nonce
    try:
        yield world_base
    finally:
        world_base.chain.revert(snapshot)
        world_base.admin._nonce, world_base.relayer._nonce = admin_nonce, relayer_nonce
        # The base fee cached from the reverted blocks may be far below the restored chain's:
        # a fee cap built on it leaves the next transaction pending for ever.
        world_base.admin._base_fee = world_base.relayer._base_fee = None
