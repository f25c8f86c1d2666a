"""The deployment record (`deployment.json` in a data directory): which ledger, on which chain."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3

from gateway.chain.ledger import Ledger

FILE_NAME = "deployment.json"


@dataclass(frozen=True)
class Deployment:
    network: str
    chain_id: int
    address: str
    deployment_block: int
    deployment_tx: str = ""
    compiler: str = ""
    sources_hash: str = ""
    abi: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, ledger: Ledger, *, network: str) -> Deployment:
        """The record of a ledger just deployed."""
        return cls.from_json(ledger.deployment_record(network=network))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        return cls(
            network=str(data.get("network", "embedded")),
            chain_id=int(data["chain_id"]),
            address=str(data["address"]),
            deployment_block=int(data.get("deployment_block", 0)),
            deployment_tx=str(data.get("deployment_tx", "")),
            compiler=str(data.get("compiler", "")),
            sources_hash=str(data.get("sources_hash", "")),
            abi=list(data.get("abi", [])),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "chain_id": self.chain_id,
            "address": self.address,
            "deployment_block": self.deployment_block,
            "deployment_tx": self.deployment_tx,
            "compiler": self.compiler,
            "sources_hash": self.sources_hash,
            "abi": self.abi,
        }

    @staticmethod
    def path(directory: Path) -> Path:
        return directory / FILE_NAME

    @classmethod
    def load(cls, directory: Path) -> Deployment:
        """The record in `directory` (FileNotFoundError when there is none)."""
        return cls.from_json(json.loads(cls.path(directory).read_text()))

    @classmethod
    def find(cls, directory: Path) -> Deployment | None:
        path = cls.path(directory)
        return cls.load(directory) if path.exists() else None

    def save(self, directory: Path) -> Path:
        path = self.path(directory)
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n")
        return path

    def ledger(self, w3: Web3) -> Ledger:
        """The deployed ledger, on a client of its chain."""
        ledger = Ledger(w3, self.address)
        ledger.deployment_block = self.deployment_block
        return ledger
