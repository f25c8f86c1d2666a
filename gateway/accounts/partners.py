"""Onboarding partners: on-chain first, then their row, their managed key and their first API key."""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.accounts.keys import create_api_key
from gateway.app.runtime import Runtime
from gateway.chain.ledger import LedgerRevert
from gateway.core.currencies import is_currency
from gateway.core.errors import Conflict, ErrorCode, Invalid, NotFound
from gateway.core.security import (
    encrypt_private_key,
    new_private_key,
)
from gateway.db.models import Partner
from partners.signing import address_of


def create_partner(
    runtime: Runtime,
    session: Session,
    *,
    name: str,
    currency: str,
    rate_points: int,
    rate_per_minor_units: int,
    allowance: int,
    signer_address: str | None,
    partner_id: int | None = None,
) -> dict[str, Any]:
    """Adds a partner on-chain with the operator's key, or (`partner_id`) adopts one the
    operator added on-chain elsewhere: the only way when the gateway holds no operator key."""
    if not is_currency(currency):
        raise Invalid(f"{currency} is not an active ISO 4217 currency code", code=ErrorCode.VALIDATION_ERROR)
    if partner_id is not None:
        rate = (rate_points, rate_per_minor_units)
        signer, allowance = _adopt(runtime, session, partner_id, currency, rate, signer_address)
        return _store(session, partner_id, name, currency, rate_points, rate_per_minor_units, signer, allowance, None)
    if runtime.operator is None:
        raise Conflict(
            "this gateway holds no operator key: add the partner on-chain with `loyalty operator add-partner` "
            "where the key is kept, then send its partner_id here",
            code=ErrorCode.OPERATOR_KEY_ABSENT,
        )
    managed = signer_address is None
    encrypted = None
    if managed:
        private_key = new_private_key()
        signer = address_of(private_key)
        encrypted = encrypt_private_key(private_key, runtime.kek)
    else:
        signer = to_checksum_address(str(signer_address))
    with runtime.operator_lock:
        try:
            partner_id = runtime.ledger.add_partner(
                runtime.operator,
                signer=signer,
                rate_points=rate_points,
                rate_per_minor_units=rate_per_minor_units,
                currency=currency,
                allowance=allowance,
            )
        except LedgerRevert as exc:
            raise Invalid(f"the ledger refused the partner: {exc.error}", code=ErrorCode.INVALID_PARTNER) from exc
    return _store(session, partner_id, name, currency, rate_points, rate_per_minor_units, signer, allowance, encrypted)


def _adopt(
    runtime: Runtime,
    session: Session,
    partner_id: int,
    currency: str,
    rate: tuple[int, int],
    signer_address: str | None,
) -> tuple[str, int]:
    """Checks the body against the partner the operator registered on-chain; returns its
    signer and allowance (the chain's, whatever the body says)."""
    if session.get(Partner, partner_id) is not None:
        raise Conflict(f"partner {partner_id} is already in this gateway", code=ErrorCode.DUPLICATE_PARTNER)
    on_chain = runtime.ledger.partner(partner_id)
    if int(str(on_chain["signer"]), 16) == 0:
        raise NotFound(f"no partner {partner_id} on the ledger", code=ErrorCode.UNKNOWN_PARTNER)
    if signer_address is None:
        raise Invalid(
            "an adopted partner signs with its own key: give its signer_address (a managed key needs the operator "
            "key in the gateway)",
            code=ErrorCode.INVALID_PARTNER,
        )
    wanted = {
        "signer_address": to_checksum_address(signer_address),
        "currency": currency,
        "earn_rate": rate,
    }
    actual = {
        "signer_address": to_checksum_address(on_chain["signer"]),
        "currency": on_chain["currency"],
        "earn_rate": (on_chain["rate_points"], on_chain["rate_per_minor_units"]),
    }
    differ = [k for k in wanted if wanted[k] != actual[k]]
    if differ:
        raise Invalid(
            f"partner {partner_id} on the ledger differs in {', '.join(differ)}",
            code=ErrorCode.INVALID_PARTNER,
            on_chain={k: list(v) if isinstance(v, tuple) else v for k, v in actual.items()},
        )
    return actual["signer_address"], int(on_chain["allowance"])


def _store(
    session: Session,
    partner_id: int,
    name: str,
    currency: str,
    rate_points: int,
    rate_per_minor_units: int,
    signer: str,
    allowance: int,
    encrypted: str | None,
) -> dict[str, Any]:
    managed = encrypted is not None
    session.add(
        Partner(
            id=partner_id,
            name=name,
            currency=currency,
            rate_points=rate_points,
            rate_per_minor_units=rate_per_minor_units,
            signer_address=signer,
            managed=managed,
            encrypted_key=encrypted,
        )
    )
    session.flush()
    _, key = create_api_key(session, role="partner", partner_id=partner_id)
    return {
        "partner_id": partner_id,
        "api_key": key,
        "signer_address": signer,
        "managed": managed,
        "name": name,
        "currency": currency,
        "allowance": allowance,
        "earn_rate": {"points": rate_points, "per_minor_units": rate_per_minor_units},
    }


def get_partner(session: Session, partner_id: int, *, for_update: bool = False) -> Partner:
    query = select(Partner).where(Partner.id == partner_id)
    partner = session.scalar(query.with_for_update() if for_update else query)
    if partner is None:
        raise NotFound(f"no partner {partner_id}", code=ErrorCode.UNKNOWN_PARTNER)
    return partner
