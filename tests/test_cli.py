"""The command line as a user meets it, in fresh processes: bad input is one line on stderr and
exit status 2, answered before TensorFlow is imported; a good run prints no TensorFlow start-up
logging unless --verbose asks for it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from portrait_core.paths import DEFAULT_MODEL, PROJECT

# TensorFlow's C++ log lines (absl format), e.g. "I0000 00:00:17... port.cc:153] oneDNN ..."
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cuda", re.MULTILINE)
# Runs main() and says whether TensorFlow was imported on the way (stdout's last line).
MAIN_AND_IMPORTS = (
    "import sys\n"
    "from portrait_core.cli import main\n"
    "try:\n"
    "    code = main(sys.argv[1:])\n"
    "except SystemExit as exc:  # argparse's errors\n"
    "    code = exc.code\n"
    "print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow')\n"
    "sys.exit(code)\n"
)


def _env() -> dict:
    """The user's environment: none of the suite's own TensorFlow log settings."""
    return {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}


def cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "portrait_core", *argv], cwd=PROJECT, env=_env(),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def main_in_fresh_process(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", MAIN_AND_IMPORTS, *argv], cwd=PROJECT, env=_env(),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def notes(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are notes, not a picture")
    return path


def test_predict_on_a_file_that_is_not_an_image_is_one_exact_line(notes):
    done = cli("predict", str(notes))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"error: {notes} is not an image Portrait Lab reads (PNG, JPEG, WebP or BMP)\n"
    ), done.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["predict", "{notes}"], "is not an image"),
        (["predict", "{notes}", "--model", "{tmp}/no-model"], "no model folder or run named"),
        (["predict", "{tmp}/missing.jpg"], "does not exist"),
        (["train", "--data", "{tmp}/no-data", "--out", "{tmp}/runs"], "does not exist"),
        (["train", "--epochs", "zero"], "is not a whole number"),
        (["train", "--data", "{tmp}", "--ordinal-spread", "-1"], "ordinal_spread must be in"),
        (["train", "--data", "{tmp}", "--age-spread", "30"], "age_spread must be in"),
        (
            ["train", "--data", "{tmp}", "--preset", "study", "--degrade-share", "0.5"],
            "needs augmentation photo",
        ),
        (["evaluate", "no-such-run", "--out", "{tmp}/runs"], "no run no-such-run"),
        (["publish", "no-such-run", "--out", "{tmp}/runs"], "no run no-such-run"),
        (["predict", "{notes}", "--explain", "rainbow"], "invalid choice"),
    ],
)
def test_bad_input_answers_in_one_line_before_tensorflow_is_imported(
    notes, tmp_path, argv, expected
):
    argv = [a.format(notes=notes, tmp=tmp_path) for a in argv]
    done = main_in_fresh_process(*argv)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.splitlines()[-1] == "no tensorflow"
    assert not (tmp_path / "runs").exists()  # no run folder for a run that cannot start


def test_a_good_run_prints_labels_and_no_tensorflow_logging(tmp_path):
    face = tmp_path / "face.png"
    Image.new("RGB", (90, 120), (150, 120, 100)).save(face)
    done = cli("predict", str(face), "--model", str(DEFAULT_MODEL))
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert done.stdout.startswith(f"{face}: gender=")

    loud = cli("predict", str(face), "--model", str(DEFAULT_MODEL), "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert TF_LOG_LINE.search(loud.stderr), loud.stderr  # --verbose keeps TensorFlow's logging
    assert loud.stdout == done.stdout
