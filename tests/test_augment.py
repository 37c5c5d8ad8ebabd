"""Training-time augmentation ([train.augment]) and per-event charge normalisation (model.params.normalise)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cohep.config import experiment as config
from cohep.core.errors import ConfigError
from cohep.frameworks.augment import AugmentConfig, augment
from cohep.frameworks.training import TrainConfig
from cohep.models import ModelSpec, build_learner, initial_weights
from cohep.frameworks.normalise import EVENT_REFERENCE, event_scale, normalise

H = W = 40


def _events(n: int = 6, seed: int = 0) -> torch.Tensor:
    """Sparse 3-view events: a track from the vertex (row 0.3 H, column 0.5 W) and noise hits."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 3, H, W), dtype=np.float32)
    for i in range(n):
        for v in range(3):
            slope = rng.uniform(-0.8, 0.8)
            for k in range(12):
                x[i, v, 12 + k, int(20 + slope * k)] = rng.uniform(20, 40)
            x[i, v, rng.integers(0, H, 5), rng.integers(0, W, 5)] = 1.5
    return torch.from_numpy(x)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


ALL = AugmentConfig(vertex_shift=3, charge_scale=0.3, pitch_scale=0.2, dead_wires=0.1, noise=0.1)
OFF = AugmentConfig(enabled=False)
NONE = {"vertex_shift": 0, "charge_scale": 0.0, "pitch_scale": 0.0, "dead_wires": 0.0, "noise": 0.0}


def only(**one) -> AugmentConfig:
    """One variation alone (the defaults switch all five on)."""
    return AugmentConfig(**{**NONE, **one})


def test_augmentation_keeps_shapes_leaves_the_batch_alone_and_follows_its_seed():
    x = _events()
    before = x.clone()
    out = augment(x, ALL, _gen(1))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(x, before)
    assert torch.equal(out, augment(x, ALL, _gen(1)))
    assert not torch.equal(out, augment(x, ALL, _gen(2)))
    assert not torch.equal(out, x)
    assert (out >= 0).all()
    assert torch.equal(augment(x.half(), OFF, _gen(0)), x.half().float())  # off: a copy


def test_vertex_shift_moves_pixels_exactly_and_the_time_shift_is_shared_by_the_views():
    x = _events()
    out = augment(x, only(vertex_shift=4), _gen(3))
    for i in range(len(x)):
        track_in, track_out = x[i][x[i] > 10], out[i][out[i] > 10]  # the tracks stay inside the window
        assert torch.equal(torch.sort(track_out)[0], torch.sort(track_in)[0])
        assert float(out[i].sum()) <= float(x[i].sum()) + 1e-3
        cols = [int((out[i, v] > 20).nonzero()[:, 1].min() - (x[i, v] > 20).nonzero()[:, 1].min()) for v in range(3)]
        assert len(set(cols)) == 1 and abs(cols[0]) <= 4  # one drift-time shift for all views
    shifts = {int((out[i, 0] > 20).nonzero()[:, 0].min()) - 12 for i in range(len(x))}
    assert len(shifts) > 1 and max(abs(s) for s in shifts) <= 4


def test_pitch_rescale_conserves_charge_and_scales_about_the_vertex():
    x = _events(20)
    x = x * (x > 10)  # the tracks alone: they stay inside the window
    out = augment(x, only(pitch_scale=0.3), _gen(4))
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=1e-5, atol=1e-3)
    # the track's extent along the wires changes by 1 / factor about the vertex row (0.3 H = 12)
    extent_in = [(x[i, 2] > 10).nonzero()[:, 0].max().item() for i in range(20)]
    extent_out = [(out[i, 2] > 0.5).nonzero()[:, 0].max().item() for i in range(20)]
    ratios = [(b + 0.5 - 12) / (a + 0.5 - 12) for a, b in zip(extent_in, extent_out)]
    assert min(ratios) < 0.95 and max(ratios) > 1.05 and 0.7 < min(ratios) and max(ratios) < 1.5
    vertex = [(out[i, 2] > 0).nonzero()[:, 0].min().item() for i in range(20)]
    assert all(abs(r - 12) <= 1 for r in vertex)  # the vertex stays put


def test_charge_scale_is_one_gain_per_event():
    x = _events()
    out = augment(x, only(charge_scale=0.5), _gen(5))
    hit = x > 0
    gains = []
    for i in range(len(x)):
        ratio = out[i][hit[i]] / x[i][hit[i]]
        torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0])))
        gains.append(float(ratio[0]))
    assert np.std(np.log(gains)) > 0.1
    assert torch.equal(out > 0, hit)


def test_dead_wires_zero_whole_rows_and_noise_keeps_empty_pixels_empty():
    x = torch.ones(8, 3, H, W)
    out = augment(x, only(dead_wires=0.25), _gen(6))
    rows = out.amax(dim=3)
    assert set(rows.unique().tolist()) == {0.0, 1.0}
    assert 0.15 < float((rows == 0).float().mean()) < 0.35
    sparse = _events(20)
    smeared = augment(sparse, only(noise=0.2), _gen(7))
    assert torch.equal(smeared > 0, sparse > 0)
    rel = (smeared[sparse > 0] / sparse[sparse > 0] - 1.0)
    assert 0.15 < float(rel.std()) < 0.25


def test_cosmic_overlay_follows_its_rate_crosses_the_window_and_scales_with_the_event():
    x = _events(400)
    out = augment(x, only(cosmics=1.0), _gen(8))
    added = out - x
    assert float(added.min()) >= 0.0  # an overlay only adds charge
    hit = added.flatten(1).sum(1) > 0
    # Poisson(1): 1 - 1/e of the events get at least one track (400 events: sd 0.024)
    assert abs(float(hit.float().mean()) - (1 - np.exp(-1.0))) < 0.08
    # a track crosses the window edge to edge: at least a window's side of pixels per view
    one = added[hit][0]
    assert all(int((one[v] > 0).sum()) >= H for v in range(3))
    # every view of an event with a track gets it, on the same drift-time span
    assert torch.equal(added[hit].amax(dim=(2, 3)) > 0, torch.ones(int(hit.sum()), 3, dtype=torch.bool))
    # charge in the event's own units: scaling the event scales its overlay
    assert torch.allclose(augment(3.0 * x, only(cosmics=1.0), _gen(8)), 3.0 * out, rtol=1e-4, atol=1e-4)
    # off (the default): no draw, bit-identical to the batch without the switch
    assert AugmentConfig().cosmics == 0.0
    assert torch.equal(augment(x, ALL, _gen(9)), augment(x, AugmentConfig(**{**ALL.__dict__, "cosmics": 0.0}), _gen(9)))


def test_view_dropout_blanks_whole_views_at_its_rate_and_never_a_whole_event():
    x = _events(600)
    out = augment(x, only(view_dropout=0.3), _gen(10))
    present = out.amax(dim=(2, 3)) > 0
    # a kept view is the view unchanged, a dropped one is empty
    for e, v in zip(*torch.nonzero(present, as_tuple=True)):
        assert torch.equal(out[e, v], x[e, v])
    assert present.any(dim=1).all()
    # P(dropped) = 0.3, except that an event losing all three keeps them (0.3^3 of the events)
    expected = 0.3 - 0.3 ** 3
    assert abs(float((~present).float().mean()) - expected) < 0.03
    assert AugmentConfig().view_dropout == 0.0 and only(view_dropout=0.3).active


def test_augment_section_is_validated_by_name():
    cfg = config.from_dict({"train": {"augment": {"vertex_shift": 5, "charge_scale": 0.2}}})
    assert cfg.train.augment == AugmentConfig(vertex_shift=5, charge_scale=0.2)
    assert cfg.train.augment.active and AugmentConfig().active and not OFF.active
    assert not AugmentConfig(**NONE).active
    assert AugmentConfig().applies_to(torch.zeros(2, 3, 8, 8)) and not AugmentConfig().applies_to(torch.zeros(2, 1, 8, 8))
    for bad, message in (({"vertex_shift": -1}, "train.augment.vertex_shift must be >= 0"),
                         ({"dead_wires": 1.0}, "train.augment.dead_wires must be < 1"),
                         ({"noise": "high"}, "train.augment.noise must be a number"),
                         ({"jitter": 1}, "unknown field train.augment.jitter")):
        with pytest.raises(ConfigError, match=message):
            config.from_dict({"train": {"augment": bad}})
    assert config.from_dict(config.to_toml_dict(cfg)) == cfg  # round-trips through the experiment file


@pytest.mark.parametrize("name", ["compact", pytest.param("resnet50v2", marks=pytest.mark.slow)])
def test_training_augments_batches_only_reproducibly_for_torch_and_keras(name, one_torch_thread):
    shape = (3, 32, 32)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.gamma(0.3, 20.0, size=(8, *shape)).astype(np.float32) * (rng.random((8, *shape)) < 0.1))
    data = TensorDataset(x, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    spec = ModelSpec(name, shape, 3)
    start = initial_weights(spec, 0)

    def trained(augment_cfg: AugmentConfig):
        cfg = TrainConfig(batch_size=4, max_steps=2, augment=augment_cfg)
        learner = build_learner(spec, data, data, None, cfg, seed=0, initial=start)
        learner.train_steps(data, 1.0, seed=11)
        return learner

    plain, aug, again = trained(OFF), trained(ALL), trained(ALL)
    w_plain, w_aug, w_again = plain.live_weights(), aug.live_weights(), again.live_weights()
    assert any(not np.array_equal(w_plain[k], w_aug[k]) for k in w_plain)  # the batches were augmented
    assert all(np.array_equal(w_aug[k], w_again[k]) for k in w_aug)  # reproducibly
    # scoring never augments: the same weights score the same with and without the section
    plain.load_live(w_aug)
    p_plain, labels = plain.predict(data)
    p_aug, labels_aug = aug.predict(data)
    np.testing.assert_array_equal(labels, labels_aug)
    np.testing.assert_allclose(p_plain, p_aug, rtol=1e-5, atol=1e-6)
    assert torch.equal(data.tensors[0], x)


def test_one_view_batches_are_left_alone_by_default(one_torch_thread):
    x = torch.rand(8, 1, 8, 8)
    data = TensorDataset(x, torch.tensor([0, 1] * 4))
    spec = ModelSpec("image_cnn", (1, 8, 8), 2)
    start = initial_weights(spec, 0)
    weights = []
    for aug in (AugmentConfig(), OFF):
        learner = build_learner(spec, data, data, None, TrainConfig(batch_size=4, max_steps=2, augment=aug),
                                seed=0, initial=start)
        learner.train_steps(data, 1.0, seed=3)
        weights.append(learner.live_weights())
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_event_normalisation_ignores_the_charge_scale():
    x = _events(4)
    a, b = normalise(x, "event"), normalise(x * 37.5, "event")
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(normalise(x, "log1p"), normalise(x * 37.5, "log1p"))
    # the per-event scale is the track charge (20-40), not dragged down by the 1.5 noise hits
    s = event_scale(torch.relu(x))
    assert ((s > 20) & (s < 40)).all()
    assert torch.equal(normalise(torch.zeros(2, 3, 4, 4), "event"), torch.zeros(2, 3, 4, 4))
    one = torch.zeros(1, 1, 2, 2)
    one[0, 0, 0, 0] = 3.0
    assert float(normalise(one, "event")[0, 0, 0, 0]) == pytest.approx(np.log1p(EVENT_REFERENCE))


def test_models_take_the_normalise_param_and_reject_unknown_modes(one_torch_thread):
    x = _events(2).repeat(1, 1, 1, 1)
    spec = ModelSpec("compact", (3, H, W), 3, {"normalise": "event"})
    learner = build_learner(spec, None, None, None, TrainConfig(), seed=0)
    learner.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(learner.model(x), learner.model(x * 9.0), rtol=1e-4, atol=1e-4)
    for name in ("compact", "resnet50v2"):
        with pytest.raises(ConfigError, match="model.params.normalise must be one of log1p, event"):
            initial_weights(ModelSpec(name, (3, 32, 32), 3, {"normalise": "zscore"}), 0)


def test_bipolar_fold_counts_both_lobes_and_leaves_unipolar_data_alone():
    """model.params.bipolar: "drop" keeps max(x, 0), "fold" |x|; identical on non-negative images."""
    uni = _events(4)
    bi = uni.clone()
    bi[:, :2, :, 1:] -= uni[:, :2, :, :-1]  # a negative lobe one tick after every induction-plane hit
    for mode in ("log1p", "event"):
        assert torch.equal(normalise(uni, mode, bipolar="fold"), normalise(uni, mode, bipolar="drop"))
        assert torch.equal(normalise(bi, mode, bipolar="fold"), normalise(bi.abs(), mode))
    dropped, folded = normalise(bi, "log1p"), normalise(bi, "log1p", bipolar="fold")
    assert (folded[:, :2] > 0).sum() > (dropped[:, :2] > 0).sum()  # the second lobe now counts
    assert torch.equal(folded[:, 2], dropped[:, 2])  # the unipolar collection plane is unchanged


@pytest.mark.parametrize("name", ["compact", pytest.param("resnet50v2", marks=pytest.mark.slow)])
def test_bipolar_is_a_checked_model_param(name):
    """Checked, and wired into the model's input: the same weights score bipolar events differently."""
    x = torch.rand(4, 3, 32, 32) * 40 - 20  # half the pixels negative
    data = TensorDataset(x, torch.tensor([0, 1, 2, 0]))
    start = initial_weights(ModelSpec(name, (3, 32, 32), 3), 0)
    probs = {}
    for bipolar in ("drop", "fold"):
        spec = ModelSpec(name, (3, 32, 32), 3, {"bipolar": bipolar})
        probs[bipolar] = build_learner(spec, None, None, None, TrainConfig(), seed=0, initial=start).predict(data)[0]
    assert not np.allclose(probs["drop"], probs["fold"])
    with pytest.raises(ConfigError, match="model.params.bipolar"):
        build_learner(ModelSpec(name, (3, 32, 32), 3, {"bipolar": "abs"}), None, None, None, TrainConfig(), seed=0)


def test_planes_reads_only_the_chosen_views():
    """model.params.planes = [2]: the induction planes do not change the output, the collection plane does."""
    spec = ModelSpec("compact", (3, 32, 32), 3, {"planes": [2]})
    learner = build_learner(spec, None, None, None, TrainConfig(), seed=0)
    x = torch.rand(4, 3, 32, 32) * 40
    other = x.clone()
    other[:, :2] = torch.rand(4, 2, 32, 32) * 400  # other induction planes, another charge scale
    changed = x.clone()
    changed[:, 2] = changed[:, 2].flip(-1)
    p = [learner.predict(TensorDataset(v, torch.zeros(4, dtype=torch.long)))[0] for v in (x, other, changed)]
    np.testing.assert_allclose(p[0], p[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(p[0], p[2])


def test_planes_builds_the_network_for_the_views_read():
    """A view the model does not read costs nothing: one read view has a third of the per-view filters,
    and the views read in another order are another model (the order is the channels')."""
    from cohep.models.compact import CompactMultiViewCNN

    count = [sum(t.numel() for t in CompactMultiViewCNN(3, 3, planes=p).parameters())
             for p in ("all", [0, 1, 2], [0, 2], [2], "collection")]
    assert count[0] == count[1] > count[2] > count[3] == count[4]
    assert CompactMultiViewCNN(3, 3).features[0].in_channels == 1  # the default: the collection plane
    assert CompactMultiViewCNN(3, 3, planes=[0, 1, 2]).read is None
    m = CompactMultiViewCNN(3, 3, planes=[2, 0]).eval()
    x = torch.rand(2, 3, 32, 32) * 40
    with torch.no_grad():
        assert torch.equal(m.normalise(x), CompactMultiViewCNN(3, 3, planes="all").normalise(x[:, [2, 0]]))


def test_views_read_names_the_collection_plane_last():
    from cohep.models.compact import views_read

    assert views_read("collection", 3) == [2] and views_read("collection", 1) == [0]
    assert views_read("all", 3) == [0, 1, 2] and views_read((1, 0), 3) == [1, 0]


@pytest.mark.parametrize("planes", [[], [3], [2, 2], "2", [True], "induction", None])
def test_bad_planes_are_one_line_naming_the_field(planes):
    with pytest.raises(ConfigError, match="model.params.planes"):
        build_learner(ModelSpec("compact", (3, 32, 32), 3, {"planes": planes}), None, None, None, TrainConfig(), seed=0)


def test_floor_drops_faint_hits_under_its_fraction_of_the_event_scale():
    """model.params.floor: pixels under floor * s are dropped before the log, the track is kept as it was."""
    x = torch.tensor([[[[0.0, 1.0, 100.0, 100.0, 100.0, 5.0, 9.0, 10.0]]]])
    # s: the charge-weighted mean is 93.0, so the pixels above 9.3 (100, 100, 100, 10) average 77.5
    assert float(event_scale(x)[0]) == pytest.approx(77.5)
    for mode in ("event", "log1p"):
        cut, plain = normalise(x, mode, floor=0.1), normalise(x, mode)  # 0.1 * 77.5 = 7.75
        assert (cut[0, 0, 0] == 0).tolist() == [True, True, False, False, False, True, False, False]
        keep = cut[0, 0, 0] > 0
        torch.testing.assert_close(cut[0, 0, 0][keep], plain[0, 0, 0][keep])
    assert torch.equal(normalise(x, "event", floor=0.0), normalise(x, "event"))
    # the 1.5 noise hits of _events go, each 20-40 track pixel stays; an empty event stays empty
    ev = _events(3)
    cut = normalise(ev, "event", floor=0.1)
    assert torch.equal(cut > 0, ev >= 20)
    assert torch.equal(normalise(torch.zeros(2, 3, 4, 4), "event", floor=0.5), torch.zeros(2, 3, 4, 4))


@pytest.mark.parametrize("floor", [-0.1, 1.0, "0.1", True, None])
def test_floor_is_a_checked_model_param(floor):
    with pytest.raises(ConfigError, match=r"model.params.floor must be a number in \[0, 1\)"):
        build_learner(ModelSpec("compact", (3, 32, 32), 3, {"floor": floor}), None, None, None, TrainConfig(), seed=0)


def test_compact_model_applies_its_floor_to_the_input():
    """The same weights: with floor = 0.1 the noise hits no longer change the output, without it they do."""
    ev = _events(4)
    clean = torch.where(ev >= 20, ev, torch.zeros_like(ev))
    start = initial_weights(ModelSpec("compact", (3, H, W), 3), 0)
    out = {}
    for floor in (0.0, 0.1):
        lr = build_learner(ModelSpec("compact", (3, H, W), 3, {"floor": floor}), None, None, None, TrainConfig(),
                           seed=0, initial=start)
        out[floor] = [lr.predict(TensorDataset(v, torch.zeros(4, dtype=torch.long)))[0] for v in (ev, clean)]
    np.testing.assert_allclose(out[0.1][0], out[0.1][1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[0.0][0], out[0.0][1])
