"""The tf.data pipeline: shapes, dtypes, mean image, weights, augmentation only on train, balancing."""

from __future__ import annotations

import numpy as np
import pytest

from portrait_core import pipeline as pl
from portrait_core.data.split import load_or_make_split
from portrait_core.images import load_letterboxed
from portrait_core.schema import ATTRIBUTES

SIZE = 32
ATTRS = ("gender", "hairstyle")


def build(dataset, **kw) -> pl.InputPipeline:
    splits, _ = load_or_make_split(dataset, seed=0)
    parts = pl.split_data(dataset.table, splits, ATTRS)
    return pl.InputPipeline(**parts, image_size=SIZE, batch_size=8, seed=1, **kw)


def test_batches_have_the_documented_shapes_and_dtypes(make_pictures):
    p = build(make_pictures(60))
    p.mean_image()
    x, y, w = next(iter(p.train_dataset()))
    assert x.shape == (8, SIZE, SIZE, 3) and x.dtype.name == "float32"
    assert set(y) == set(ATTRS) == set(w)
    for a in ATTRS:
        assert y[a].dtype.name == "int32" and y[a].shape == (8,)
        assert w[a].dtype.name == "float32"
        assert (y[a].numpy() >= -1).all() and (y[a].numpy() < ATTRIBUTES[a].n_classes).all()
    assert 0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 255


def test_mean_image_is_the_training_splits_per_pixel_mean(make_pictures):
    p = build(make_pictures(40))
    expected = np.mean(
        [load_letterboxed(q, SIZE).astype(np.float64) for q in p.train.paths], axis=0
    )
    got = p.mean_image()
    assert got.shape == (SIZE, SIZE, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_val_and_test_are_never_augmented(make_pictures):
    p = build(make_pictures(60))
    for split in ("val", "test"):
        data = getattr(p, split)
        images = np.concatenate([x.numpy() for x, _, _ in p.eval_dataset(split)])
        expected = np.stack([load_letterboxed(q, SIZE) for q in data.paths]).astype(np.float32)
        np.testing.assert_array_equal(images, expected)


def test_training_batches_are_augmented(make_pictures):
    dataset = make_pictures(40)
    plain = build(dataset, augment=False)
    augmented = build(dataset, augment=True)
    a = np.concatenate([x.numpy() for x, _, _ in plain.train_dataset()])
    b = np.concatenate([x.numpy() for x, _, _ in augmented.train_dataset()])
    assert a.shape == b.shape
    # same pictures (the cache order is seeded) but different pixels once augmented
    assert np.abs(np.sort(a.ravel()) - np.sort(b.ravel())).mean() > 1.0


def test_missing_labels_weigh_zero_and_rare_classes_weigh_more(make_pictures):
    p = build(make_pictures(80, missing=0.3))
    y, w = pl.targets(p.train, p._class_weights())
    for a in ATTRS:
        codes = p.train.codes[a]
        assert (w[a][codes < 0] == 0).all()
        assert (w[a][codes >= 0] > 0).all()
        assert (y[a][codes < 0] == -1).all()  # the loss ignores class -1
    weights = pl.class_weights(np.array([0] * 90 + [1] * 10), 2)
    assert weights[1] > weights[0] * 5
    assert pl.class_weights(np.array([0] * 999 + [1]), 2)[1] == pl.MAX_CLASS_WEIGHT


def test_balancing_oversamples_rare_classes_up_to_the_target(make_pictures):
    p = build(make_pictures(80, missing=0.0), balance=("gender", 60), augment=False)
    p.mean_image()
    codes = np.concatenate([y["gender"].numpy() for _, y, _ in p.train_dataset()])
    counts = np.bincount(codes, minlength=2)
    natural = np.bincount(p.train.codes["gender"], minlength=2)
    assert counts.sum() == sum(max(n, 60) for n in natural)
    assert (counts >= 0.7 * 60).all()  # sampled, so only about the target
    assert p.steps_per_epoch() == int(np.ceil(counts.sum() / 8))


def test_large_data_sets_cache_to_a_file_not_memory(make_pictures, monkeypatch, tmp_path):
    monkeypatch.setattr(pl, "MEMORY_CACHE_LIMIT", 10)  # bytes: forces the file cache
    p = build(make_pictures(30), cache_dir=tmp_path / "cache")
    p.mean_image()
    assert any((tmp_path / "cache").iterdir())
    assert sum(len(x) for x, _, _ in p.train_dataset()) == len(p.train)


def test_memory_cache_budget_is_shared_by_the_splits(make_pictures, monkeypatch, tmp_path):
    # Room in memory for the training split only: val must go to a file, test is not cached.
    pictures = make_pictures(30)
    probe = build(pictures)
    monkeypatch.setattr(pl, "MEMORY_CACHE_LIMIT", len(probe.train) * probe.picture_bytes)
    p = build(pictures, cache_dir=tmp_path / "cache")
    p.mean_image()
    assert not (tmp_path / "cache").exists()  # the training split fitted in memory
    assert p._memory_cached == len(p.train) * p.picture_bytes
    val = [y["gender"] for _, y, _ in p.eval_dataset("val")]
    cached = lambda: {f.name.split("-")[0] for f in (tmp_path / "cache").iterdir()}  # noqa: E731
    assert cached() == {"val"}
    test = [y["gender"] for _, y, _ in p.eval_dataset("test")]
    assert cached() == {"val"}
    assert sum(len(v) for v in val) == len(p.val) and sum(len(t) for t in test) == len(p.test)
    assert p._memory_cached == len(p.train) * p.picture_bytes  # unchanged by val and test


def test_empty_training_split_is_a_clear_error():
    empty = pl.SplitData(paths=np.array([], dtype=object), codes={"gender": np.array([], int)})
    p = pl.InputPipeline(train=empty, val=empty, test=empty, image_size=SIZE)
    with pytest.raises(ValueError, match="training split is empty"):
        p.mean_image()


def test_batch_weights_make_each_heads_loss_the_mean_over_its_labelled_pictures(make_pictures):
    """Weights scaled by (batch / labelled pictures in the batch), per head, before any
    distribution strategy splits the batch: Keras' sum-over-batch-size reduction then gives
    the mean over the labelled pictures of the whole batch (training/metrics.py)."""
    p = build(make_pictures(80, missing=0.3))
    p.mean_image()
    _, raw = pl.targets(p.val, None)  # 1 where labelled, 0 where missing; val is in file order
    start = 0
    for _, y, w in p.eval_dataset("val"):
        for a in ATTRS:
            labels, weights = y[a].numpy(), w[a].numpy()
            batch, labelled = len(labels), int((labels >= 0).sum())
            expected = raw[a][start : start + batch] * (batch / labelled if labelled else 0.0)
            np.testing.assert_allclose(weights, expected, rtol=1e-6)
            assert weights.sum() == pytest.approx(batch if labelled else 0.0, rel=1e-5)
        start += batch
    assert start == len(p.val)
