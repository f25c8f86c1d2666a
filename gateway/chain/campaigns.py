"""Campaigns on the ledger (SPEC section 2, r2): registering one with the partner's signature,
reading its terms and spent budget, and what an earn that named one got.

A campaign is registered by `createCampaign(terms, nonce, deadline, r, vs)` (anyone submits the
partner's signature over `partners.signing.CampaignMessage`); an earn names it with a
`partners.signing.CampaignEarnMessage` in a `SignedEarn`, and its `Earned` event carries the
campaign id and the bonus (included in the event's points).
"""

from __future__ import annotations

from dataclasses import dataclass

from web3.types import TxReceipt

from gateway.chain.ledger import BatchResult, Ledger, LedgerEvent, Sender
from gateway.points.rules import CampaignModel
from partners.signing import CampaignMessage, CompactSignature


@dataclass(frozen=True)
class Campaign:
    """A campaign's terms as the ledger holds them, and the bonus points it has issued."""

    campaign_id: int
    partner_id: int
    start: int
    end: int
    bonus_bps: int
    fixed_bonus: int
    min_spend: int
    tier_mask: int
    budget: int
    spent: int = 0

    @property
    def remaining(self) -> int:
        return self.budget - self.spent

    def model(self) -> CampaignModel:
        """The same terms for the rules model (gateway/points/rules.py), which keeps no id."""
        t = (self.start, self.end, self.bonus_bps, self.fixed_bonus, self.min_spend, self.tier_mask, self.budget)
        return CampaignModel(self.partner_id, *t, spent=self.spent)

    @classmethod
    def from_event(cls, event: LedgerEvent) -> Campaign:
        """From a `CampaignCreated` event (nothing spent yet)."""
        a = event.args
        return cls(
            int(a["campaignId"]),
            int(a["partnerId"]),
            int(a["start"]),
            int(a["end"]),
            int(a["bonusBps"]),
            int(a["fixedBonus"]),
            int(a["minSpend"]),
            int(a["tierMask"]),
            int(a["budget"]),
        )


def create_campaign(ledger: Ledger, sender: Sender, message: CampaignMessage, signature: CompactSignature) -> int:
    """Registers the campaign the partner signed; returns its id. Reverts (`LedgerRevert`) with
    `InvalidCampaign`, `InvalidSignature`, `NonceAlreadyUsed`, `SignatureExpired`,
    `UnknownPartner` or `PartnerSuspended`."""
    receipt = create_campaign_receipt(ledger, sender, message, signature)
    created = [e for e in ledger.decode_logs(receipt) if e.name == "CampaignCreated"]
    return int(created[0].args["campaignId"])


def create_campaign_receipt(
    ledger: Ledger, sender: Sender, message: CampaignMessage, signature: CompactSignature
) -> TxReceipt:
    return ledger.call(
        sender, "createCampaign", message.terms(), message.nonce, message.deadline, signature.r, signature.vs
    )


def campaign(ledger: Ledger, campaign_id: int, block: int | str = "latest") -> Campaign | None:
    """The campaign's terms and spent budget at `block`; None for an unknown id."""
    terms, spent = ledger.view("campaign", campaign_id, block=block)
    if int(terms[0]) == 0:
        return None
    partner_id, start, end, bonus_bps, fixed_bonus, min_spend, tier_mask, budget = (int(v) for v in terms)
    return Campaign(
        campaign_id, partner_id, start, end, bonus_bps, fixed_bonus, min_spend, tier_mask, budget, int(spent)
    )


def campaign_count(ledger: Ledger, block: int | str = "latest") -> int:
    return int(ledger.view("campaignCount", block=block))


@dataclass(frozen=True)
class CampaignEarn:
    """What one accepted earn of a batch got from the campaign it named."""

    receipt_ref: bytes
    campaign_id: int
    points: int  # bonus included
    bonus: int


def campaign_earns(result: BatchResult) -> list[CampaignEarn]:
    """Each accepted earn of an earn batch that named a campaign (bonus 0: it did not qualify)."""
    return [
        CampaignEarn(
            bytes(e.args["receiptRef"]), int(e.args["campaignId"]), int(e.args["points"]), int(e.args["bonus"])
        )
        for e in result.named("Earned")
        if int(e.args.get("campaignId", 0))
    ]
