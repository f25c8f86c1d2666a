"""The same state machine on the embedded chain: fewer examples, since py-evm is slower.

A file of its own so that the two test workers run it beside the long anvil machine.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tests.test_ledger_state_machine import LedgerMachine


class EmbeddedLedgerMachine(LedgerMachine):
    chain_kind = "embedded"


EmbeddedLedgerMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("LEDGER_SM_EMBEDDED_EXAMPLES", "8")),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.slow
class TestLedgerStateMachineOnEmbedded(EmbeddedLedgerMachine.TestCase):  # type: ignore[name-defined]
    pass
