"""Compiles contracts/ with solc through py-solc-x and writes the committed artifacts."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import solcx

from gateway.core.config import REPO_ROOT, CompilerSettings, shipped
from gateway.core.errors import CompileError

CONTRACTS_DIR = REPO_ROOT / "contracts"
COMPILED_DIR = CONTRACTS_DIR / "artifacts"  # what `loyalty compile` writes (committed)
# Where the artifacts are read from: the checkout's, or the copies an installed package carries.
ARTIFACTS_DIR = shipped("contracts", "artifacts")
NODE_MODULES = REPO_ROOT / "node_modules"
SOLCJS_ADAPTER = CONTRACTS_DIR / "tools" / "solc-standard-json"
# Source files compiled, relative to the repository root; the artifacts are for these contracts.
ROOT_SOURCES = (
    "contracts/CoalitionPoints.sol",
    "contracts/CoalitionPointsAdmin.sol",
    "contracts/CoalitionPointsPrograms.sol",
    "contracts/reference/PlainMintToken.sol",
)
ARTIFACT_CONTRACTS = {
    "CoalitionPoints": "contracts/CoalitionPoints.sol",
    "CoalitionPointsAdmin": "contracts/CoalitionPointsAdmin.sol",
    "CoalitionPointsPrograms": "contracts/CoalitionPointsPrograms.sol",
    "PlainMintToken": "contracts/reference/PlainMintToken.sol",
}
# The ledger runs its modules' functions through its fallback (delegatecall; the operator
# module's own fallback reaches the programme module): the ledger's artifact lists them too,
# so one ABI at the ledger's address covers everything.
MODULES = {"CoalitionPoints": ("CoalitionPointsAdmin", "CoalitionPointsPrograms")}

_IMPORT = re.compile(r'^\s*import\s+(?:[^"\']*from\s+)?["\']([^"\']+)["\']', re.MULTILINE)


@dataclass(frozen=True)
class Compiler:
    """A solc executable that speaks standard JSON, and how it was found."""

    path: Path
    version: str
    origin: str  # "native" or "solc-js"


def _read_unit(unit: str) -> str:
    if unit.startswith("@"):
        path = NODE_MODULES / unit
    else:
        path = REPO_ROOT / unit
    if not path.is_file():
        hint = " (run `npm ci` to install @openzeppelin/contracts)" if unit.startswith("@") else ""
        raise CompileError(f"source {unit} not found at {path}{hint}")
    return path.read_text()


def collect_sources() -> dict[str, dict[str, str]]:
    """Every source unit reachable from ROOT_SOURCES, keyed by its import name.

    Giving solc all sources inline (instead of letting it read files) makes the input
    identical for a native solc and for solc-js, so both produce the same bytecode.
    """
    sources: dict[str, dict[str, str]] = {}
    pending = list(ROOT_SOURCES)
    while pending:
        unit = pending.pop()
        if unit in sources:
            continue
        content = _read_unit(unit)
        sources[unit] = {"content": content}
        for imported in _IMPORT.findall(content):
            if imported.startswith("."):
                imported = posixpath.normpath(posixpath.join(posixpath.dirname(unit), imported))
            pending.append(imported)
    return dict(sorted(sources.items()))


def sources_hash(sources: dict[str, dict[str, str]]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()


def standard_input(settings: CompilerSettings, sources: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "optimizer": {"enabled": settings.optimizer, "runs": settings.optimizer_runs},
            "viaIR": settings.via_ir,
            "evmVersion": settings.evm_version,
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
        },
    }


def _version_of(executable: Path) -> str | None:
    try:
        out = subprocess.run([str(executable), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"Version: (\d+\.\d+\.\d+)", out.stdout)
    return match.group(1) if match else None


def find_compiler(settings: CompilerSettings) -> Compiler:
    """A native solc of the configured version if one is installed, else solc-js via Node."""
    candidates: list[tuple[Path, str]] = []
    native = shutil.which("solc")
    if native:
        candidates.append((Path(native), "native"))
    try:
        candidates.append((Path(solcx.install.get_executable(settings.version)), "native"))
    except (solcx.exceptions.SolcNotInstalled, solcx.exceptions.SolcInstallationError):
        pass
    if shutil.which("node"):
        candidates.append((SOLCJS_ADAPTER, "solc-js"))
    for path, origin in candidates:
        if _version_of(path) == settings.version:
            return Compiler(path=path.resolve(), version=settings.version, origin=origin)
    raise CompileError(
        f"no solc {settings.version} found: install a native solc, or run `npm ci` for solc-js (needs Node.js)"
    )


def compile_contracts(settings: CompilerSettings, compiler: Compiler | None = None) -> dict[str, dict[str, Any]]:
    """Compiles the project's contracts; returns artifacts keyed by contract name."""
    compiler = compiler or find_compiler(settings)
    sources = collect_sources()
    try:
        output = solcx.compile_standard(
            standard_input(settings, sources), solc_binary=str(compiler.path), allow_empty=False
        )
    except solcx.exceptions.SolcError as exc:
        # py-solc-x raises on compile errors; show solc's own messages, not its dump.
        try:
            output = json.loads(exc.stdout_data or "")
        except ValueError:
            raise CompileError(f"solc failed: {exc.message}") from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    full_version = str(solcx.wrapper.get_solc_version(compiler.path, with_commit_hash=True))
    digest = sources_hash(sources)
    artifacts: dict[str, dict[str, Any]] = {}
    for name, unit in ARTIFACT_CONTRACTS.items():
        out = output["contracts"][unit][name]
        artifacts[name] = {
            "_generated": f"by `loyalty compile` (gateway/chain/compiler.py) with solc {full_version}; do not edit",
            "contractName": name,
            "sourceName": unit,
            "compiler": {
                "version": full_version,
                "optimizer": settings.optimizer,
                "optimizerRuns": settings.optimizer_runs,
                "viaIR": settings.via_ir,
                "evmVersion": settings.evm_version,
            },
            "sourcesHash": digest,
            "abi": out["abi"],
            "bytecode": "0x" + out["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + out["evm"]["deployedBytecode"]["object"],
        }
    for name, modules in MODULES.items():
        for module in modules:
            artifacts[name]["abi"] = merged_abi(artifacts[name]["abi"], artifacts[module]["abi"])
    return artifacts


def merged_abi(own: list[dict[str, Any]], module: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ledger's ABI plus the module's functions, events and errors it lacks (the module's
    constructor and the ledger's fallback are not callable through the other)."""

    def key(item: dict[str, Any]) -> tuple[str, str]:
        return item["type"], item.get("name", "")

    seen = {key(item) for item in own}
    extra = [item for item in module if item["type"] in ("function", "event", "error") and key(item) not in seen]
    return own + extra


def write_artifacts(artifacts: dict[str, dict[str, Any]], directory: Path = COMPILED_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in artifacts.items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(artifact, indent=2) + "\n")
        written.append(path)
    return written
