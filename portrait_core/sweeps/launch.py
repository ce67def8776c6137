"""Start a sweep in its own process, as training/launch.py starts a run: no page, reload or
closed tab can block or kill it. The sweep's folder and study exist (state "queued") before this
returns, so the app lists it at once. Neither TensorFlow nor the trials run here.
"""

from __future__ import annotations

from portrait_core.sweeps.sweep import Sweep, SweepSpec, SweepStore
from portrait_core.training.launch import spawn


def launch_sweep(spec: SweepSpec, space: dict) -> Sweep:
    """Check and prepare the sweep (bad settings raise ValueError, before any process), then
    run `python -m portrait_core sweep --from-sweep FOLDER` in a new session."""
    sweep = SweepStore.beside(spec.runs).prepare(spec, space)
    sweep.set_status(state="queued", error=None, reason=None)
    process = spawn(["sweep", "--from-sweep", str(sweep.path)], sweep.log_file)
    sweep.register_worker(process.pid)  # running from now on; the child registers itself too
    return sweep
