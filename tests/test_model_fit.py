"""Each model declares the data it fits, and a mismatch is one line naming the data, not a traceback.

The case that motivated it: 1,797 single-view 8 x 8 images with 10 classes, run with ``--model
mnist_cnn``, failed mid-run with a torch shape error.
"""
from __future__ import annotations

import pytest

from cohep.core.errors import ConfigError
from cohep.models import DataFit, ModelSpec, check_fits, get


def _message(spec: ModelSpec, source="data") -> str:
    with pytest.raises(ConfigError) as err:
        check_fits(spec, source)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_the_imported_digits_get_a_one_line_answer_with_a_model_that_fits():
    assert _message(ModelSpec("mnist_cnn", (1, 8, 8), 10), "digits.h5") == (
        "digits.h5: model mnist_cnn needs 28 x 28 images, got 8 x 8 (try --model image_cnn)"
    )
    assert _message(ModelSpec("compact", (1, 8, 8), 10), "digits.h5") == (
        "digits.h5: model compact needs images of at least 16 x 16, got 8 x 8 (try --model image_cnn)"
    )
    check_fits(ModelSpec("image_cnn", (1, 8, 8), 10), "digits.h5")  # the suggestion does fit


def test_the_source_may_be_a_path():
    from pathlib import Path

    message = _message(ModelSpec("resnet50v2", (3, 16, 16), 3), Path("/data/run 1/events.h5"))
    assert message.startswith("/data/run 1/events.h5: model resnet50v2 needs images of at least 32 x 32, got 16 x 16")


def test_mnist_cnn_takes_any_channel_count_but_only_28_x_28():
    for views in (1, 3):
        check_fits(ModelSpec("mnist_cnn", (views, 28, 28), 10))
    assert "needs 28 x 28 images, got 28 x 29" in _message(ModelSpec("mnist_cnn", (1, 28, 29), 10))


def test_compact_needs_four_patches_a_side_and_takes_any_views():
    for views in (1, 2, 3, 7):
        check_fits(ModelSpec("compact", (views, 16, 16), 3))
    assert "at least 16 x 16, got 15 x 200" in _message(ModelSpec("compact", (3, 15, 200), 3))
    # the need follows the spec's params: a bigger patch needs bigger images
    check_fits(ModelSpec("compact", (3, 8, 8), 3, {"patch": 2}))
    message = _message(ModelSpec("compact", (3, 24, 24), 3, {"patch": 8}))
    assert "needs images of at least 32 x 32, got 24 x 24" in message
    # the default for 24 x 24 three-view images is compact itself: a params problem, no model hint
    assert "try" not in message


@pytest.mark.parametrize("name", ["resnet50v2", "densenet169"])
def test_the_keras_applications_need_32_pixels(name):
    check_fits(ModelSpec(name, (3, 32, 32), 3))
    assert "at least 32 x 32, got 31 x 64" in _message(ModelSpec(name, (3, 31, 64), 3))


def test_image_cnn_takes_any_images():
    for shape in [(1, 1, 1), (1, 8, 8), (5, 13, 37), (3, 200, 200)]:
        check_fits(ModelSpec("image_cnn", shape, 2))


def test_images_need_views_h_w():
    message = _message(ModelSpec("image_cnn", (28, 28), 10))
    assert message == "data: model image_cnn needs images of shape (views, H, W), got shape [28, 28]"


def test_no_suggestion_when_nothing_else_fits():
    # a rank-2 shape fits no model: no "try" hint pointing at another misfit
    assert "try" not in _message(ModelSpec("mnist_cnn", (28, 28), 10))


def test_every_registered_model_declares_a_fit():
    from cohep.models import available

    for name in available():
        assert isinstance(get(name).fits, DataFit)


def test_data_fit_names_views_and_classes():
    fit = DataFit(views=3, classes=10)
    assert fit.mismatch((3, 8, 8), 10) is None
    assert fit.mismatch((1, 8, 8), 10) == ("3 views per image", "1")
    assert DataFit(views=1).mismatch((2, 8, 8)) == ("1 view per image", "2")
    assert fit.mismatch((3, 8, 8), 2) == ("10 classes", "2")
    assert fit.mismatch((3, 8, 8), None) is None  # no class count: shape only (choosing a model)
    assert DataFit(min_side=lambda params: params.get("side", 5)).mismatch((1, 4, 9), params={}) == (
        "images of at least 5 x 5", "4 x 9"
    )


@pytest.mark.parametrize("kwargs, message", [
    (dict(views=0), "DataFit.views must be a positive integer or None, got 0"),
    (dict(views=True), "DataFit.views must be a positive integer"),
    (dict(min_side=0), "DataFit.min_side must be a positive integer or a function of params, got 0"),
    (dict(min_side="16"), "DataFit.min_side must be"),
    (dict(size=[28, 28]), "DataFit.size must be a (H, W) tuple of positive integers or None, got [28, 28]"),
    (dict(size=(28,)), "DataFit.size must be a (H, W) tuple"),
    (dict(size=(28, 0)), "DataFit.size must be a (H, W) tuple"),
    (dict(size=(8, 8), min_side=16), "DataFit.size (8, 8) is below DataFit.min_side 16"),
    (dict(classes=-1), "DataFit.classes must be a positive integer or None, got -1"),
])
def test_a_malformed_fit_fails_where_it_is_declared(kwargs, message):
    with pytest.raises(ValueError) as err:
        DataFit(**kwargs)
    assert message in str(err.value)
