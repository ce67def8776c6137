"""Start a sweep in its own process, as training/launch.py starts a run: no page, reload or
closed tab can block or kill it. The sweep's folder and study exist (state "queued") before this
returns, so the app lists it at once. Neither TensorFlow nor the trials run here.
"""

from __future__ import annotations

import subprocess
import sys

from portrait_core.paths import PROJECT
from portrait_core.sweeps.sweep import Sweep, SweepSpec, SweepStore


def launch_sweep(spec: SweepSpec, space: dict) -> Sweep:
    """Check and prepare the sweep (bad settings raise ValueError, before any process), then
    run `python -m portrait_core sweep --from-sweep FOLDER` in a new session."""
    sweep = SweepStore.beside(spec.runs).prepare(spec, space)
    sweep.set_status(state="queued", error=None, reason=None)
    log = open(sweep.log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "portrait_core", "sweep", "--from-sweep", str(sweep.path)],
            cwd=PROJECT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own session: a Ctrl-C or a dying app leaves it running
        )
    finally:
        log.close()
    sweep.register_worker(process.pid)  # running from now on; the child registers itself too
    return sweep
