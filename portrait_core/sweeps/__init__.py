"""Tuning sweeps: many short runs of one model, their settings chosen by Optuna.

    space.py    the search space: a model's default (models/catalog.py) or a SPACE file,
                checked before TensorFlow loads; a trial's parameters -> its TrainConfig
    sweep.py    a sweep's folder (artifacts/sweeps/<name>/) and what the pages read from it:
                its state, its trials, the best one, parallel coordinates, importances
    runner.py   the sweep itself: ask Optuna, train a run, score it on the validation split,
                tell Optuna (TensorFlow is imported by the trials, not here)
    launch.py   a sweep in its own process, as the app starts a run

A sweep sits above training (its trials are ordinary run folders) and below the CLI and the
pages, which call it. Only runner.py's trials import TensorFlow.
"""
