"""Opening the runtime: `loyalty init` and `loyalty serve` call `open_runtime`. On an empty data
directory it deploys the ledger, creates the database and writes the first admin key;
afterwards it opens what is there."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

from gateway.app.deployment import Deployment
from gateway.app.runtime import Runtime
from gateway.chain.backends import ChainBackend, EmbeddedChain, RpcChain, anvil_dev_keys
from gateway.chain.ledger import Ledger, Sender
from gateway.core.config import Settings
from gateway.core.errors import ConfigError
from gateway.core.security import new_api_key
from gateway.db.models import ApiKey, Member, Partner
from gateway.db.session import database_url, make_engine, make_sessionmaker, migrate

ANVIL_CHAIN_ID = 31337


def open_chain(settings: Settings, network: str, data_dir: Path | None) -> ChainBackend:
    """A network name from the settings, or an http(s):// JSON-RPC URL."""
    timeout = settings.gateway.rpc_timeout_seconds
    if network.startswith(("http://", "https://")):
        return RpcChain(network, timeout=timeout)
    net = settings.networks.get(network)
    if net is None:
        raise ConfigError(f"unknown network {network!r}; known: {', '.join(settings.networks)} or a URL")
    if net.kind == "embedded":
        return EmbeddedChain(data_dir / "chain.sqlite" if data_dir else None)
    if not net.rpc_url:
        raise ConfigError(f"network {network!r} has no rpc_url")
    return RpcChain(net.rpc_url, timeout=timeout)


def operator_key(settings: Settings, chain: ChainBackend) -> str:
    """The operator's key: from settings, or a development chain's own funded account."""
    if settings.deployer_key is not None:
        return settings.deployer_key.get_secret_value()
    if settings.env == "development":
        if chain.dev_keys:
            return chain.dev_keys[0]
        if chain.chain_id == ANVIL_CHAIN_ID:
            return anvil_dev_keys()[0]  # a local anvil node: its public development account
    raise ConfigError("set LOYALTY_DEPLOYER_KEY: this network has no development account")


def gateway_operator_key(settings: Settings, chain: ChainBackend) -> str | None:
    """The operator's key if the gateway is to hold it; None when it runs without (SPEC
    section 3): turned off by `gateway.operator_key_in_gateway`, or production with no
    LOYALTY_DEPLOYER_KEY."""
    if not settings.gateway.operator_key_in_gateway:
        return None
    if settings.env == "production" and settings.deployer_key is None:
        return None
    return operator_key(settings, chain)


def relayer_key(settings: Settings, chain: ChainBackend) -> str:
    if settings.relayer_key is not None:
        return settings.relayer_key.get_secret_value()
    if settings.env == "development":
        if chain.dev_keys:
            return chain.dev_keys[1]
        if chain.chain_id == ANVIL_CHAIN_ID:
            return anvil_dev_keys()[1]
    if gateway_operator_key(settings, chain) is None:
        raise ConfigError("set LOYALTY_RELAYER_KEY: the gateway holds no operator key to pay gas with")
    return operator_key(settings, chain)


def open_runtime(settings: Settings, *, data_dir: Path, network: str | None = None, log: bool = True) -> Runtime:
    data_dir.mkdir(parents=True, exist_ok=True)
    record = Deployment.find(data_dir)
    network = network or (record.network if record else "embedded")
    chain = open_chain(settings, network, data_dir)
    tip = settings.gateway.priority_fee_wei
    key = gateway_operator_key(settings, chain)
    operator = Sender(chain.w3, key, priority_fee=tip) if key is not None else None
    relayer = Sender(chain.w3, relayer_key(settings, chain), priority_fee=tip)
    if record is None:
        if operator is None:
            raise ConfigError(
                f"no deployment.json in {data_dir} and no operator key to deploy with: run `loyalty deploy` "
                "where the operator's key is kept and copy its deployment.json here"
            )
        ledger = Ledger.deploy(operator, settings.coalition)
        record = Deployment.of(ledger, network=network)
        record.save(data_dir)
        if log:
            print(f"deployed the ledger at {ledger.address} on chain {ledger.chain_id}")
    else:
        if record.chain_id != chain.chain_id:
            path = Deployment.path(data_dir)
            raise ConfigError(f"{path} is for chain {record.chain_id}, the network is {chain.chain_id}")
        ledger = record.ledger(chain.w3)
    url = database_url(data_dir, settings.database_url)
    migrate(url)
    engine = make_engine(url)
    write_engine = make_engine(url, writer=True) if url.startswith("sqlite") else engine
    runtime = Runtime(
        settings,
        data_dir,
        network,
        chain,
        ledger,
        operator,
        relayer,
        engine,
        make_sessionmaker(engine),
        make_sessionmaker(write_engine),
        record,
        write_engine if write_engine is not engine else None,
    )
    runtime.chain_time = chain.latest_timestamp()
    _first_admin_key(runtime, log=log)
    _check_key_encryption_key(runtime)
    return runtime


def _check_key_encryption_key(runtime: Runtime) -> None:
    """Refuses to start when the key-encryption key does not open the stored keys: better now
    than at the first managed earn."""
    with runtime.sessions() as session:
        sample = session.scalar(select(Partner.encrypted_key).where(Partner.encrypted_key.is_not(None)).limit(1))
        sample = sample or session.scalar(
            select(Member.encrypted_key).where(Member.encrypted_key.is_not(None)).limit(1)
        )
    if sample is None:
        return
    try:
        runtime.private_key(sample)
    except Exception as exc:  # noqa: BLE001 - any failure means the wrong key
        runtime.close()
        raise ConfigError(
            "LOYALTY_KEY_ENCRYPTION_KEY does not open the keys stored in this database (a different key?)"
        ) from exc


def _first_admin_key(runtime: Runtime, *, log: bool) -> None:
    path = runtime.data_dir / "admin.key"
    with runtime.writes.begin() as session:
        # An active one: a data directory whose admin keys were all revoked (before the gateway
        # refused to revoke the last one) gets a new first key.
        active = select(ApiKey).where(ApiKey.role == "admin", ApiKey.revoked_at.is_(None)).limit(1)
        if session.scalar(active) is not None:
            return
        key_id, key, key_hash = new_api_key()
        session.add(ApiKey(id=key_id, key_hash=key_hash, role="admin"))
        # Written before the commit: if the write fails, no unknowable admin key exists.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        os.chmod(path, 0o600)
    if log:
        print(f"the first admin API key is in {path} (mode 0600)")
