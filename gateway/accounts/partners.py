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
from gateway.core.errors import ErrorCode, Invalid, NotFound
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
) -> dict[str, Any]:
    if not is_currency(currency):
        raise Invalid(f"{currency} is not an active ISO 4217 currency code", code=ErrorCode.VALIDATION_ERROR)
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
