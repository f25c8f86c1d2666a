"""Merkle roots and proofs of earn batches, built exactly as CoalitionPoints._merkleRoot does."""

from __future__ import annotations

from eth_utils import keccak


def _pair(a: bytes, b: bytes) -> bytes:
    # OpenZeppelin's Hashes.commutativeKeccak256: the smaller word first.
    return keccak(a + b) if a < b else keccak(b + a)


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    if not leaves:
        raise ValueError("an earn batch commits at least one leaf")
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        nxt = [_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # an odd node is carried up unchanged
        levels.append(nxt)
    return levels


def merkle_root(leaves: list[bytes]) -> bytes:
    return _levels(leaves)[-1][0]


def merkle_proof(leaves: list[bytes], index: int) -> list[bytes]:
    """Sibling hashes from leaf `index` up to the root, for OpenZeppelin's MerkleProof.verify."""
    return _proof(_levels(leaves), index)


def merkle_proofs(leaves: list[bytes]) -> list[list[bytes]]:
    """The proof of every leaf, hashing the tree once (a batch's proofs are stored together)."""
    levels = _levels(leaves)
    return [_proof(levels, i) for i in range(len(leaves))]


def _proof(levels: list[list[bytes]], index: int) -> list[bytes]:
    proof = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return proof


def verify(proof: list[bytes], root: bytes, leaf: bytes) -> bool:
    node = leaf
    for sibling in proof:
        node = _pair(node, sibling)
    return node == root
