"""``cohep deploy``: start an experiment on any JSON-RPC chain for a list of members.

It fixes the model from the settings and the shape of a data file (nothing of the data leaves: only
its image shape and class names are read), puts the initial weights in a store every member can
read, deploys the coordinator contract for the member list, and writes the shared experiment file.

It checks what a newcomer gets wrong before it writes or sends anything: the RPC URL (one line
within seconds), the deployer's balance against the deployment's gas at the chain's fees, a chain
that makes no blocks on a clock (``check_clock``), and an HTTP store, which is read-only: the
weights go into the folder that URL serves (``store`` a folder, ``public_url`` its URL).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cohep import models
from cohep.config.experiment import ExperimentConfig
from cohep.core.errors import CohepError
from cohep.run.experiment_file import Experiment, Member
from cohep.wire.checks import default_max_bytes
from cohep.run.tasks import load_task, seed_bytes
from cohep.wire.store import WeightStore

#: gas of a deployment (constructor and start) at most, beside DEPLOY_GAS_PER_MEMBER per member: a
#: stated bound for the balance check (measured on Anvil 1.7.1: 5.61 M for 2 members, 5.97 M for 10,
#: 6.88 M for 30; tests/test_newcomer.py checks that the bound holds)
DEPLOY_GAS = 6_500_000
DEPLOY_GAS_PER_MEMBER = 60_000


def deploy_gas(members: int) -> int:
    return DEPLOY_GAS + DEPLOY_GAS_PER_MEMBER * members


@dataclass(frozen=True)
class MemberSpec:
    """A member as given on the command line: ``ADDRESS`` or ``ADDRESS=STORE_URL``."""

    address: str
    store: str | None = None

    @classmethod
    def parse(cls, text: str) -> "MemberSpec":
        address, sep, store = text.partition("=")
        address = address.strip()
        if not (address.startswith("0x") and len(address) == 42):
            raise CohepError(f"--member {text!r}: expected ADDRESS or ADDRESS=STORE_URL with a 0x address")
        return cls(address, store.strip() or None if sep else None)


def deploy(
    cfg: ExperimentConfig,
    *,
    data_path: str,
    members: list[MemberSpec],
    rpc: str,
    deployer_key: str,
    store: str,
    shared_store: str | None = None,
    public_url: str | None = None,
    out: str | Path,
    check_clock: bool = False,
) -> Experiment:
    """Deploy ``cfg`` for ``members``; the initial weights go to ``store`` (which every member must be
    able to read, at ``public_url`` when given: a folder this machine serves); returns the experiment
    written to ``out``. ``check_clock``: refuse a chain that makes no blocks on a clock (the CLI does)."""
    from web3 import Web3

    from cohep.core.errors import ChainError
    from cohep.ledger import Chain, Coordinator
    from cohep.ledger.chain import block_clock_problem, check_funds, funds_error
    from cohep.protocol.vote import threshold_fraction

    if len(members) < 2:
        raise CohepError(f"an experiment needs at least 2 members, got {len(members)}")
    if cfg.degrade.active:
        raise CohepError("degrade: degrading a learner's data is a research switch of in-process runs; "
                         "a deployed experiment's members bring their own data")
    addresses = [Web3.to_checksum_address(m.address) for m in members]
    if len(set(addresses)) != len(addresses):
        raise CohepError("a member is listed twice")
    if urlsplit(store).scheme.lower() in ("http", "https"):
        raise CohepError(f"--store {store}: an HTTP store is read-only; write the initial weights into the folder "
                         f"that URL serves and announce the URL: --store DIR --public-url {store}")
    # the members are the learners: the protocol's round shape follows their count
    cfg, data, spec = load_task(cfg.replace(data={"path": str(data_path)}, experiment={"learners": len(addresses)}))
    cfg = cfg.replace(data={"path": None}, chain={"rpc": None})
    chain = Chain.connect(rpc, 1, private_keys=[deployer_key])  # before anything is written: a bad URL fails here
    sender = chain.accounts[0]
    check_funds(chain, sender, deploy_gas(len(addresses)), f"deploying for {len(addresses)} members")
    if check_clock and (problem := block_clock_problem(chain)):
        raise ChainError(problem)
    initial = models.initial_weights(spec, cfg.experiment.seed, private=cfg.privacy.active)
    digest, uri = WeightStore(store, public_url=public_url).put(initial)
    try:
        coord = Coordinator.deploy(
            chain, addresses, threshold=threshold_fraction(cfg.vote.threshold),
            proposal_window=cfg.chain.proposal_window, vote_window=cfg.chain.resolved_vote_window(len(addresses)),
            seed=seed_bytes(cfg.experiment.seed), initial_digest=digest, model_digest=spec.digest(),
            max_missed=cfg.chain.max_missed, proposers=cfg.round.proposers, combine=cfg.round.combine,
            sender=sender,
        )
    except ChainError as exc:  # the funds ran out between the check and the send
        raise funds_error(exc, sender) or exc from None
    experiment = Experiment(
        name=cfg.experiment.name, chain_id=chain.chain_id, contract=coord.address,
        deployed_block=coord.settings().deployed_block,
        members=tuple(Member(a, m.store) for a, m in zip(addresses, members)),
        model=spec, class_names=tuple(data.class_names), initial_digest=digest.hex(), initial_uri=uri,
        shared_store=shared_store, config=cfg, max_bytes=default_max_bytes(initial),
    )
    experiment.write(out)
    return experiment
