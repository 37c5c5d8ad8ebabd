"""A task from an experiment's config: its data read, its model fixed, the data dealt out to learners,
the learners built with their seeds. Every command that trains starts here (the in-process run, a node,
central training, quality and competition studies, the Flower baseline).
"""
from __future__ import annotations

import hashlib

import numpy as np

from cohep import models
from cohep.config.experiment import ExperimentConfig
from cohep.datasets.source import LabelledData, holdout_indices, load_data
from cohep.datasets.splits import LearnerIndices, assign
from cohep.frameworks.learner import TrainableLearner
from cohep.frameworks.privacy import check_model
from cohep.models import ModelSpec
from cohep.research import attacks, degrade


def seed_bytes(seed: int) -> bytes:
    """The 32-byte on-chain seed derived from the experiment seed (public, reproducible)."""
    return hashlib.sha256(f"cohep-seed:{seed}".encode()).digest()


def learner_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, 1000 + index]).generate_state(1)[0])


def load_task(cfg: ExperimentConfig) -> tuple[ExperimentConfig, LabelledData, ModelSpec]:
    """Read ``data.path`` and fix the model: the one named (an unknown name fails before any data is
    read) or the data's default; it must fit the data. Every command that trains starts here.

    Returns the config with the model name resolved, so manifests record what actually ran.
    """
    d = cfg.data
    if cfg.model.name is not None:
        _check_private(cfg, models.get(cfg.model.name))
    data = load_data(d.resolved_kind(), d.path, limit=d.limit)
    cfg = augment_for(cfg, data)
    if cfg.model.name is None:
        cfg = cfg.replace(model={"name": models.default_for(data.input_shape)})
        _check_private(cfg, models.get(cfg.model.name))
    spec = ModelSpec(cfg.model.name, tuple(int(s) for s in data.input_shape), len(data.class_names),
                     dict(cfg.model.params))
    models.check_fits(spec, data.source)  # unfitting models fail here, before any work
    return cfg, data, spec


def augment_for(cfg: ExperimentConfig, data: LabelledData) -> ExperimentConfig:
    """``[train.augment]`` varies what differs between LArTPC detectors (a vertex, dead wires, the
    pitch): it is for wire-plane events only. For other images (MNIST, an imported image set) it is
    turned off here, so the config every learner gets, and the manifest, say so."""
    if data.wire_planes or not cfg.train.augment.enabled:
        return cfg
    return cfg.replace(train={"augment": {"enabled": False}})


def _check_private(cfg: ExperimentConfig, entry) -> None:
    """A ``[privacy]`` budget needs a torch model and Opacus (one line otherwise, before any data is read)."""
    if cfg.privacy.active:
        check_model(entry.name, entry.framework)


def prepare(cfg: ExperimentConfig) -> tuple[ExperimentConfig, LabelledData, list[LearnerIndices], ModelSpec]:
    """Load the task (:func:`load_task`) and deal the data out to the learners."""
    cfg, data, spec = load_task(cfg)
    d = cfg.data
    parts = assign(
        data.labels, cfg.experiment.learners, holdout=holdout_indices(len(data), d.holdout),
        method=d.split, alpha=d.alpha, vote_fraction=d.vote_fraction, seed=cfg.experiment.seed,
    )
    data, parts = degrade.apply(cfg.degrade, data, parts, seed=cfg.experiment.seed, kind=d.resolved_kind(),
                                vote_fraction=d.vote_fraction)
    return cfg, data, parts, spec


def build_learners(cfg, data, parts, spec, initial) -> list[TrainableLearner]:
    e = cfg.experiment
    n, k = len(parts), len(data.class_names)
    return [
        models.build_learner(
            spec, attacks.train_set(cfg.attack, i, data.subset(p.train), n=n, seed=cfg.experiment.seed, num_classes=k),
            data.subset(p.vote),
            data.subset(p.test) if len(p.test) else None, cfg.train,
            seed=learner_seed(e.seed, i), initial=initial,
            privacy=cfg.privacy.budget(i, learners=len(parts), rounds=e.rounds, proposers=cfg.round.proposers),
        )
        for i, p in enumerate(parts)
    ]


def privacy_spent(learners) -> list[dict] | None:
    """Each private learner's budget and spent epsilon (None when the run is not private)."""
    states = [getattr(lr, "privacy", None) for lr in learners]
    if not any(states):
        return None
    return [dict(learner=i, **s.summary()) for i, s in enumerate(states) if s is not None]
