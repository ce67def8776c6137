"""The seeded, stratified split: proportions, stratification, reproducibility, persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from portrait_core.data.split import assign_splits, load_or_make_split
from portrait_core.data.table import Dataset, make_table
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES


def random_table(n: int, seed: int, skew: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row = {"path": f"/x/{i}.png"}
        for key, attr in ATTRIBUTES.items():
            p = np.linspace(3, 1, attr.n_classes) if skew else np.ones(attr.n_classes)
            if rng.random() > 0.05:
                row[key] = attr.classes[rng.choice(attr.n_classes, p=p / p.sum())]
        rows.append(row)
    return make_table(rows)


def test_fractions_are_met():
    splits = assign_splits(random_table(2000, 1), seed=0)
    shares = pd.Series(splits).value_counts(normalize=True)
    assert abs(shares["train"] - 0.70) < 0.01
    assert abs(shares["val"] - 0.15) < 0.01
    assert abs(shares["test"] - 0.15) < 0.01


@pytest.mark.parametrize("attribute", ATTRIBUTE_KEYS)
def test_every_class_of_every_attribute_is_stratified(attribute):
    table = random_table(3000, 2)
    splits = assign_splits(table, seed=5)
    for cls in ATTRIBUTES[attribute].classes:
        members = splits[(table[attribute] == cls).to_numpy()]
        if len(members) < 50:
            continue
        share = (members == "test").mean()
        assert abs(share - 0.15) < 0.04, (cls, share, len(members))
        share = (members == "train").mean()
        assert abs(share - 0.70) < 0.05, (cls, share, len(members))


def test_a_rare_class_reaches_every_split():
    table = random_table(600, 3)
    rare = table.index[:10]
    table.loc[rare, "hairstyle"] = "balding"
    table.loc[table.index[10:], "hairstyle"] = "straight"
    splits = assign_splits(table, seed=0)
    assert set(splits[rare]) == {"train", "val", "test"}


def test_same_seed_same_split_other_seed_other_split():
    table = random_table(500, 4)
    a, b, c = assign_splits(table, 7), assign_splits(table, 7), assign_splits(table, 8)
    assert (a == b).all()
    assert (a != c).mean() > 0.2


def test_bad_fractions_are_rejected():
    with pytest.raises(ValueError, match="summing to 1"):
        assign_splits(random_table(10, 0), 0, (0.5, 0.5, 0.5))


def test_split_is_saved_beside_the_data_and_kept_when_data_grows(make_pictures):
    data = make_pictures(120, seed=1)
    first, path = load_or_make_split(data, seed=3)
    assert path.exists() and path.parent == data.root / ".portrait_lab"
    saved = pd.read_csv(path)
    assert len(saved) == 120 and set(saved["split"]) == {"train", "val", "test"}
    # more pictures arrive: old ones keep their split, new ones are split among themselves
    more = make_pictures(200, seed=1)
    grown_table = make_table(
        [{"path": p.replace(str(more.root), str(data.root))} for p in more.table["path"]]
    )
    grown = Dataset(root=data.root, table=grown_table, report=data.report)
    second, _ = load_or_make_split(grown, seed=3)
    old = dict(zip(data.table["path"], first))
    kept = [second[i] == old[p] for i, p in enumerate(grown.table["path"]) if p in old]
    assert len(kept) == 120 and all(kept)
    assert len(pd.read_csv(path)) == 200
    # reading again gives exactly the same split
    third, _ = load_or_make_split(grown, seed=3)
    assert (third == second).all()
