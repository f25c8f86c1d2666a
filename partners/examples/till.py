"""A till integration to copy: a sale earns points, a return takes them back, points pay at checkout.

Configuration (environment variables, or the options of the same meaning):

    LOYALTY_GATEWAY_URL          the gateway, e.g. https://loyalty.example (default http://127.0.0.1:8000)
    LOYALTY_PARTNER_KEY          this shop's partner API key
    LOYALTY_PARTNER_SIGNING_KEY  only for a self-custody partner: its private key (0x-hex);
                                 earns and returns are then signed here, not by the gateway
    LOYALTY_CURRENCY             the shop's currency (default EUR)

Commands:

    python partners/examples/till.py enroll card-0042 --pin 4321
    python partners/examples/till.py sale card-0042 till-7/0193 12.50
    python partners/examples/till.py return till-7/0193 5.00 --card card-0042 [--refund-id R-1]
    python partners/examples/till.py redeem card-0042 till-7/0194 100 --pin 4321
    python partners/examples/till.py balance card-0042

Exit status: 0 done, 1 the gateway refused (its error code is printed), 2 the gateway could
not be reached (nothing is lost: running the same command again is safe, see below).
"""

from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal

from partners.client import PartnerClient
from partners.errors import DuplicateReceipt, GatewayError, GatewayUnreachable, InvalidPin, OperationRejected
from partners.models import Operation
from partners.redemption import sign_redemption

# ISO 4217 minor-unit exponents that are not 2; the gateway counts money in minor units.
MINOR_UNIT_EXPONENTS = {"JPY": 0, "KRW": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3, "TND": 3}


def to_minor_units(amount: Decimal, currency: str) -> int:
    """12.50 EUR -> 1250; refuses fractions of a minor unit instead of rounding money away."""
    scaled = amount.scaleb(MINOR_UNIT_EXPONENTS.get(currency, 2))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return int(scaled)


class Till:
    """What a point-of-sale system calls; one instance per till, kept for the till's lifetime."""

    def __init__(self, client: PartnerClient, currency: str) -> None:
        self.client, self.currency = client, currency

    def ring_up_sale(self, card: str, receipt_id: str, total: Decimal) -> Operation:
        """Earns points for a paid sale and waits until they are on the chain."""
        try:
            op = self.client.earn(card, receipt_id, to_minor_units(total, self.currency), self.currency)
        except DuplicateReceipt as already:
            # The till crashed after sending this sale and rings it again: follow the first one.
            assert already.operation_id is not None
            op = self.client.operation(already.operation_id)
        return self.client.wait_for(op.operation_id)

    def process_return(
        self, receipt_id: str, refunded: Decimal, card: str | None = None, refund_id: str | None = None
    ) -> Operation:
        """Takes back the points of the refunded part of an earlier sale (by its receipt); a
        second return against the same sale needs its own `refund_id`."""
        return self.client.reverse(
            receipt_id,
            amount_minor=to_minor_units(refunded, self.currency),
            reason="goods returned at the till",
            refund_id=refund_id,
            member_id=card,  # lets a self-custody partner find the sale it signs the return against
            wait=True,
        )

    def pay_with_points(
        self, card: str, receipt_id: str, points: int, *, pin: str | None, member_key: str | None = None
    ) -> Operation:
        """Takes points as payment: the custodial member's PIN, or a self-custody member's signature."""
        if member_key is not None:
            # In a real shop the member's phone wallet signs `request.typed_data()`
            # (eth_signTypedData_v4) and the till calls `request.authorize(signature)`.
            request = self.client.redemption_request(card, receipt_id, points)
            return self.client.redeem(
                card, receipt_id, points, authorization=sign_redemption(request, member_key), wait=True
            )
        return self.client.redeem(card, receipt_id, points, pin=pin, wait=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("LOYALTY_GATEWAY_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("LOYALTY_PARTNER_KEY"))
    parser.add_argument("--signing-key", default=os.environ.get("LOYALTY_PARTNER_SIGNING_KEY"))
    parser.add_argument("--currency", default=os.environ.get("LOYALTY_CURRENCY", "EUR"))
    commands = parser.add_subparsers(dest="command", required=True)
    enroll = commands.add_parser("enroll", help="enroll a member (a card)")
    enroll.add_argument("card")
    enroll.add_argument("--pin", help="custodial member: the PIN that authorizes redemptions")
    enroll.add_argument("--address", help="self-custody member: the wallet address")
    sale = commands.add_parser("sale", help="ring up a paid sale: earn points")
    sale.add_argument("card")
    sale.add_argument("receipt")
    sale.add_argument("total", type=Decimal)
    refund = commands.add_parser("return", help="refund (part of) a sale: take its points back")
    refund.add_argument("receipt")
    refund.add_argument("refunded", type=Decimal)
    refund.add_argument("--card")
    refund.add_argument("--refund-id", help="the return's own receipt id (needed for a second return of a sale)")
    redeem = commands.add_parser("redeem", help="pay with points")
    redeem.add_argument("card")
    redeem.add_argument("receipt")
    redeem.add_argument("points", type=int)
    redeem.add_argument("--pin")
    redeem.add_argument("--member-key", help="demo only: a self-custody member's key, signing as a wallet would")
    balance = commands.add_parser("balance", help="the member's balance, read from the chain")
    balance.add_argument("card")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("set LOYALTY_PARTNER_KEY or pass --api-key")

    with PartnerClient(args.url, args.api_key, signing_key=args.signing_key) as client:
        till = Till(client, args.currency)
        try:
            if args.command == "enroll":
                member = client.enroll_member(args.card, pin=args.pin, address=args.address)
                print(
                    f"enrolled {member.member_id} at {member.address} ({'custodial' if member.custodial else 'wallet'})"
                )
            elif args.command == "sale":
                op = till.ring_up_sale(args.card, args.receipt, args.total)
                print(f"earned {op.points} points on {args.receipt} (operation {op.operation_id}, tx {op.tx_hash})")
            elif args.command == "return":
                op = till.process_return(args.receipt, args.refunded, args.card, args.refund_id)
                print(f"took back {op.points} points of {args.receipt} (operation {op.operation_id})")
            elif args.command == "redeem":
                op = till.pay_with_points(
                    args.card, args.receipt, args.points, pin=args.pin, member_key=args.member_key
                )
                print(f"paid {op.points} points on {args.receipt} (operation {op.operation_id})")
            else:
                view = client.member(args.card)
                expiring = ", ".join(f"{e.points} end of {e.month}" for e in view.expiring) or "nothing"
                print(f"{view.member_id}: balance {view.balance}, tier {view.tier}, expiring: {expiring}")
        except ValueError as mistake:  # e.g. an amount with a fraction of a cent
            print(f"not sent: {mistake}", file=sys.stderr)
            return 1
        except InvalidPin:
            print("wrong PIN: ask the customer again (five wrong PINs lock the card)", file=sys.stderr)
            return 1
        except OperationRejected as rejected:
            error = rejected.operation.error
            print(f"the ledger refused it: {error.code if error else 'unknown'}", file=sys.stderr)
            return 1
        except GatewayError as refused:
            print(f"refused: {refused.code}: {refused.message}", file=sys.stderr)
            return 1
        except GatewayUnreachable as down:
            # The SDK already retried with the same Idempotency-Key. A till with a disk would
            # keep `down.request` and `client.resend()` it later; here, running the same
            # command again is safe: a sale already accepted answers duplicate_receipt above.
            print(f"the gateway is unreachable: {down}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
