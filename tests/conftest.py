"""Shared fixtures: one deployed world per chain kind, rolled back to a snapshot per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.chain.backends import anvil_binary
from gateway.core.errors import ChainError
from tests.support import World, anvil_required, make_chain


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files that hold a long test first, the longest first (`@pytest.mark.slow(seconds=N)`,
    roughly what it takes in CI). scripts/test runs `-n 2 --dist loadfile
    --no-loadscope-reorder`: a file is one worker's unit, handed out in this order. Left where
    collection put them, the forge campaign and the state machine started last, and one of
    them ran alone for minutes at the end while the other worker stood idle."""
    weight: dict[Path, float] = {}
    for item in items:
        marker = item.get_closest_marker("slow")
        if marker is not None:
            weight[item.path] = max(weight.get(item.path, 0.0), float(marker.kwargs.get("seconds", 30)))
    items.sort(key=lambda item: -weight.get(item.path, 0.0))  # stable: each file keeps its order


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
