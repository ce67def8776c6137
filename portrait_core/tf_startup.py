"""Starting TensorFlow quietly: its start-up logging is not for the people using Portrait Lab.

`import tensorflow` writes about ten lines to stderr (oneDNN, cuda drivers, cpu_feature_guard,
cuInit). TF_CPP_MIN_LOG_LEVEL=3 silences TensorFlow's own logger, but TensorFlow 2.21 logs the
first few lines through absl before that logger exists ("All log messages before
absl::InitializeLog() is called are written to STDERR"), and no environment variable reaches
those. So the import itself runs with the process's stderr file descriptor pointed at
/dev/null, and put back at once: Python errors raised by the import still reach the user.

Call `quiet_tensorflow()` before anything imports TensorFlow (the CLI does, after checking its
arguments and files; the app does before its warm-up thread loads models). Verbose mode leaves
TensorFlow's logging as it is, for real warnings.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow's C++ logger: errors too (cuInit's "error 303")
    "GRPC_VERBOSITY": "ERROR",
}
VERBOSE_ENV = "PORTRAIT_LAB_VERBOSE"  # =1: the app keeps TensorFlow's logging too
_LOCK = threading.Lock()  # the app's warm-up thread and a page may start TensorFlow at once


@contextlib.contextmanager
def _stderr_to_devnull():
    """Point file descriptor 2 at /dev/null (C++ writes there directly), then restore it."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def quiet_tensorflow(verbose: bool | None = None) -> None:
    """Import TensorFlow without its start-up logging; verbose (default: $PORTRAIT_LAB_VERBOSE)
    keeps it all. A no-op once TensorFlow is imported: only the first import logs.
    """
    if verbose is None:
        verbose = os.environ.get(VERBOSE_ENV, "0") not in ("", "0")
    if verbose or "tensorflow" in sys.modules:
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    with _LOCK:
        if "tensorflow" in sys.modules:
            return
        with _stderr_to_devnull():
            import tensorflow  # noqa: F401
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)  # Python-side absl (e.g. on model save)
