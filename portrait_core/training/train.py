"""One training run, start to end: data -> split -> pipeline -> model -> fit -> best model -> metrics.

The CLI and the Train page both come here (the page through a separate `python -m portrait_core
train` process, so a closed tab never kills a run).
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from pathlib import Path

import numpy as np

from portrait_core.schema import AGE_BAND_YEARS, ATTRIBUTES, SCHEMA_VERSION
from portrait_core.training.config import TrainConfig
from portrait_core.training.runs import Run, RunStore, write_json_atomic


class RunCancelled(Exception):
    pass


def prepare_data(config: TrainConfig):
    """Load the data set and its saved split; returns (dataset, {split: SplitData}, split file)."""
    from portrait_core.data.formats import load_dataset
    from portrait_core.data.split import load_or_make_split
    from portrait_core.pipeline import split_data

    dataset = load_dataset(config.data)
    splits, split_path = load_or_make_split(dataset, config.seed, config.split)
    if config.faces:  # each picture cut down to its face, once (data/face_crops.py)
        from portrait_core.data.face_crops import face_crops

        dataset, splits = face_crops(dataset, splits, split_path)
    parts = split_data(dataset.table, splits, config.attributes)
    if len(parts["train"]) == 0 or len(parts["val"]) == 0:
        raise ValueError(
            f"{config.data} has too few pictures ({len(dataset)}) for a train/val/test split"
        )
    for attr in config.attributes:
        if not (parts["train"].codes[attr] >= 0).any():
            raise ValueError(
                f"no picture in {config.data} has a {attr} label; leave {attr} out of the attributes"
            )
    return dataset, parts, split_path


def is_synthetic(data: str | Path) -> bool:
    """Whether a data set is drawn montages: the generator's marker, or the default set."""
    from portrait_core.paths import DEFAULT_DATA
    from portrait_core.synth.generate import SYNTHETIC_MARKER

    path = Path(data).expanduser()
    return (path / SYNTHETIC_MARKER).is_file() or path.resolve() == DEFAULT_DATA.resolve()


def _describe_run(
    config, run, dataset, parts, split_path, model, spec, framing, replicas=1
) -> dict:
    import keras
    import tensorflow as tf

    from portrait_core import pipeline as pl

    return {
        "run_id": run.id,
        "train": config.to_dict(),
        "schema_version": SCHEMA_VERSION,
        "attributes": list(config.attributes),
        "classes": {a: list(ATTRIBUTES[a].classes) for a in config.attributes},
        "preprocessing": {
            "image_size": config.image_size,
            "letterbox": "longer side scaled to image_size, padded to a square, centred on black",
            "mean_image": "mean_image.npy (also inside model.keras, layer zero_centre)",
            "scale": "(x - mean_image) / 255",
            "augmentation": (
                {
                    "kind": "photo",
                    **pl.photo_settings(config.degrade_share),
                    "horizontal_flip": True,
                }
                if config.augmentation == "photo"
                else {
                    "kind": "study",
                    "rotation_degrees": pl.ROTATION_DEGREES,
                    "shift": pl.SHIFT,
                    "zoom": pl.ZOOM,
                    "horizontal_flip": True,
                }
            )
            if config.augment
            else None,
            # how big and where a face sits in the training pictures: a face found in a photo
            # is cropped the same way (faces.py)
            "face_framing": framing.to_dict(),
        },
        "data": {
            "path": str(Path(config.data).resolve()),
            "format": dataset.format,
            "n_images": len(dataset),
            "import_report": {
                "loaded": dataset.report.n_loaded,
                "skipped": dict(dataset.report.skipped),  # pictures left out, by reason
                "blank_labels": dataset.report.blank_counts(),  # attribute -> reason -> n
                "noted": dict(dataset.report.noted),  # pictures kept with a remark, by remark
            },
            "split_file": str(split_path),
            "split_copy": "split.csv",  # the same split, kept with the run
            "split_sizes": {k: len(v) for k, v in parts.items()},
            "synthetic": is_synthetic(config.data),
        },
        "model": {
            "name": config.model,
            "options": config.options,
            "params": int(model.count_params()),
            "cam_layer": spec.cam_layer,
            "explain_methods": list(spec.explain_methods),
        },
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "distribution": {
            "strategy": config.distribute,
            "replicas": replicas,
            # with replicas, training and validation use whole batches only
            "val_pictures_used": len(parts["val"]) - len(parts["val"]) % config.batch_size
            if replicas > 1
            else len(parts["val"]),
        },
    }


def run_training(config: TrainConfig, run: Run | None = None, resume: bool = False) -> Run:
    """Train per `config` into a run folder (created unless given); returns the run.

    resume: continue `run` from its last backed-up epoch (`resume_problem` says whether it can).
    Raises on failure after marking the run failed with the message.
    """
    run = run or RunStore(config.out).create(config.model, config.attributes)
    import os
    import signal

    resumed = {"resumed": int(run.status.get("resumed") or 0) + 1} if resume else {}
    if resume:  # a cancelled run's stop request is spent: resuming it asks it to go on
        (run.path / "STOP").unlink(missing_ok=True)
    run.set_status(
        state="running",
        pid=os.getpid(),
        started=time.time(),
        epoch=0,
        batch=0,
        error=None,
        traceback=None,  # a resumed run's earlier failure is history, not its state
        **resumed,
    )
    pipeline = None
    previous = None

    def cancel(signum, frame):  # outside fit (data preparation, evaluation): stop right away
        raise RunCancelled()

    try:  # inside fit, GracefulStop takes SIGTERM over and lets the current batch end
        previous = signal.signal(signal.SIGTERM, cancel)
    except ValueError:  # not the main thread (e.g. a test): the STOP file still works
        previous = None
    try:
        if run.stop_requested:
            raise RunCancelled()
        pipeline = _train(config, run, resume)
        return run
    except RunCancelled:
        run.set_status(state="cancelled", finished=time.time())
        return run
    except BaseException as exc:  # noqa: BLE001 - any crash must mark the run failed
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        run.set_status(
            state="failed",
            error=message,
            finished=time.time(),
            traceback=traceback.format_exc(limit=8),
        )
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if pipeline is not None:
            pipeline.close()


def _resume_point(run: Run) -> tuple[int, dict]:
    """(last backed-up epoch, the callbacks' state then); the history is cut back to it, and
    the decoded-picture cache of the killed process (its lock files too) is dropped."""
    from portrait_core.training.callbacks import BACKUP_DIR, saved_callback_state

    folder = run.path / BACKUP_DIR
    epoch = run.backed_up_epoch
    kept = [r for r in run.history if int(r.get("epoch", 0)) <= epoch]
    tmp = run.path / "history.jsonl.partial"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    tmp.replace(run.path / "history.jsonl")
    shutil.rmtree(run.path / "cache", ignore_errors=True)
    return epoch, saved_callback_state(folder, epoch)


def _train(config: TrainConfig, run: Run, resume: bool = False):
    import keras

    from portrait_core.calibration import CALIBRATION_FILE, fit_calibration
    from portrait_core.evaluate import evaluate_model, head_probabilities
    from portrait_core.faces import HEAD_FRAMING, measure_framing
    from portrait_core.faithfulness import (
        evaluate_faithfulness,
        training_methods,
        training_sample,
    )
    from portrait_core.models import create_model, get_spec
    from portrait_core.models.layers import load_saved_model
    from portrait_core.pipeline import InputPipeline
    from portrait_core.robustness import evaluate_robustness
    from portrait_core.training.callbacks import (
        BACKUP_DIR,
        BestModelSaver,
        EpochBackup,
        GracefulStop,
        ResumeState,
        RunRecorder,
        TimeBudget,
    )
    from portrait_core.training.metrics import losses_and_metrics
    from portrait_core.training.runs import write_json_atomic
    from portrait_core.training.schedules import WarmupCosine

    if config.model == "resnet50":  # no ImageNet weights to be had: say so before loading data
        from portrait_core.models.resnet50 import resolve_weights

        resolve_weights(config.options.get("weights", "imagenet"))
    from portrait_core.training.distribute import strategy_for
    from portrait_core.training.frozen import fit_inputs

    scope, replicas = strategy_for(config.distribute)  # before TensorFlow's runtime starts
    if config.batch_size % replicas:
        raise ValueError(
            f"batch size {config.batch_size} must be a multiple of the {replicas} replicas"
        )
    if config.distribute == "multiworker":  # before a worker reads its backup, or anything else
        _same_epoch_on_every_worker(config, run, scope, run.backed_up_epoch if resume else 0)
    restored_epoch, restored = _resume_point(run) if resume else (0, {})
    dataset, parts, split_path = prepare_data(config)
    shutil.copy2(split_path, run.path / "split.csv")  # the run describes itself without the data
    framing = measure_framing(parts["train"].paths, seed=config.seed) or HEAD_FRAMING
    spec = get_spec(config.model)
    balance = config.balance_target()
    if balance and balance[1] is None:
        codes = parts["train"].codes[balance[0]]
        balance = (balance[0], int(np.bincount(codes[codes >= 0]).max()))
    pipeline = InputPipeline(
        **parts,
        image_size=config.image_size,
        batch_size=config.batch_size,
        # a resumed run's fit starts the shuffling and augmentation streams afresh: seeded
        # anew, its remaining epochs do not replay the first epochs' pictures in the first
        # epochs' order (measured on a tiny set: the replay lowered the training loss by 0.2)
        seed=config.seed + 7919 * restored_epoch,
        augment=config.augment,
        augmentation=config.augmentation,
        degrade_share=config.degrade_share,
        balance=balance,
        weight_classes=config.class_weights,
        positions=bool(config.age_spread),  # age targets as positions among the bands
        cache_dir=run.path / "cache",
        drop_remainder=replicas > 1,
    )
    for split in ("train", "val") if replicas > 1 else ():
        if len(parts[split]) < config.batch_size:
            raise ValueError(
                f"the {split} split has {len(parts[split])} pictures, fewer than one batch of "
                f"{config.batch_size}: distributed training uses whole batches only"
            )
    keras.utils.set_random_seed(config.seed)
    with scope():
        model = create_model(config.model, config.image_size, config.attributes, **config.options)
    mean = pipeline.mean_image()
    np.save(run.path / "mean_image.npy", mean)
    model.get_layer("zero_centre").set_mean(mean)
    described = _describe_run(
        config, run, dataset, parts, split_path, model, spec, framing, replicas
    )
    write_json_atomic(run.path / "config.json", described)
    # the model fitted: the whole one, or its top on cached features of the frozen layers
    fit_model, train_ds, val_ds, described["frozen_cache"] = fit_inputs(
        model, pipeline, config, replicas, run.path / "cache"
    )
    write_json_atomic(run.path / "config.json", described)

    losses, metrics = losses_and_metrics(
        config.attributes,
        config.label_smoothing,
        config.ordinal_spread,
        config.age_spread / AGE_BAND_YEARS,  # the bands are decades: years to bands
    )
    steps = pipeline.steps_per_epoch()
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
        train_ds = train_ds.take(steps)
    with scope():
        learning_rate = learning_rate_for(config, steps)
        fit_model.compile(
            optimizer=optimizer_for(config, steps, learning_rate), loss=losses, metrics=metrics
        )
    stopper = GracefulStop(run)
    saver = BestModelSaver(run.model_file, whole=model)
    early = keras.callbacks.EarlyStopping(
        "val_loss", patience=config.early_stop_patience, restore_best_weights=True
    )
    plateau = (
        keras.callbacks.ReduceLROnPlateau(
            "val_loss", factor=config.lr_factor, patience=config.lr_patience, min_lr=1e-6
        )
        if config.schedule == "plateau"
        else None  # the cosine schedule sets the rate itself, step by step
    )
    # with a cosine, the budget also ends the schedule at the last epoch that fits
    budget = (
        TimeBudget(
            config.max_minutes,
            config.epochs,
            steps,
            learning_rate if isinstance(learning_rate, WarmupCosine) else None,
        )
        if config.max_minutes
        else None
    )
    backup = run.path / BACKUP_DIR
    resume_state = ResumeState(backup, early, plateau, saver, budget, restored, stopper)
    callbacks = [
        stopper,
        RunRecorder(run, config.epochs, steps, budget),
        saver,
        early,
        *([plateau] if plateau else []),
        keras.callbacks.TensorBoard(
            str(run.path / "tensorboard"), write_graph=False, profile_batch=0
        ),
        *([budget] if budget else []),
        # after the callbacks whose state it keeps, before the backup of the same epoch
        resume_state,
        # weights, optimizer (moments, step count, learning rate) and epoch, every finished
        # epoch, for `train --resume`; kept until the run completed
        EpochBackup(backup, stopper),
    ]
    if resume:  # BackupAndRestore loads into a built model and optimizer
        with scope():  # its variables are the strategy's, as the model's are
            fit_model.optimizer.build(fit_model.trainable_variables)
    fit_model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=2,
    )
    train_seconds = resume_state.seconds()
    if not run.model_file.exists():
        if stopper.requested:
            raise RunCancelled()
        model.save(run.model_file)  # val_loss never finite: keep the last model, say so below
    if not _is_chief(config):
        # another worker of a multiworker run: its folder is temporary. What follows runs
        # outside the strategy (a model loaded afresh), on the chief alone, with no collective
        # the other workers would have to join.
        if not stopper.requested:
            shutil.rmtree(backup, ignore_errors=True)
        run.set_status(state="cancelled" if stopper.requested else "completed",
                       finished=time.time())  # fmt: skip
        return pipeline
    best = load_saved_model(run.model_file)
    run.set_status(evaluating=True)
    # one temperature per head, fitted on the best model's validation outputs (calibration.py)
    val_probs, _, _ = head_probabilities(best, pipeline.eval_dataset("val"))
    calibration = fit_calibration(val_probs, parts["val"].codes)
    write_json_atomic(run.path / CALIBRATION_FILE, calibration)
    metrics_out = evaluate_model(
        best,
        pipeline.eval_dataset("test"),
        parts["test"].codes,
        parts["train"].codes,
        temperatures=calibration["temperatures"],
    )
    metrics_out["robustness"] = evaluate_robustness(
        best,
        parts["test"].paths,
        parts["test"].codes,
        config.image_size,
        metrics_out["attributes"],
        batch_size=config.batch_size,
    )
    # deletion and insertion AUC of every explanation method, on a few test pictures
    metrics_out["faithfulness"] = evaluate_faithfulness(
        best,
        parts["test"].paths,
        config.image_size,
        spec.cam_layer,
        config.model,
        n=training_sample(len(parts["test"])),
        methods=training_methods(spec.cam_layer),  # Score-CAM: `evaluate` measures it
    )
    metrics_out.update(
        split="test",
        train_seconds=round(train_seconds, 3),
        best_epoch=saver.best_epoch,
        stopped_by_time_budget=bool(budget and budget.stopped_epoch),
        best_val_loss=saver.best if saver.best_epoch else None,
        epochs_run=len(run.history),
        resumed_from_epoch=restored_epoch if resume else None,
    )
    write_json_atomic(run.path / "metrics.json", metrics_out)
    state = "cancelled" if stopper.requested else "completed"
    if state == "completed":  # nothing left to resume; a cancelled run keeps its backup
        shutil.rmtree(backup, ignore_errors=True)
    run.set_status(state=state, finished=time.time(), evaluating=False)
    return pipeline


def _same_epoch_on_every_worker(config: TrainConfig, run: Run, scope, epoch: int) -> None:
    """Every worker of a multiworker run resumes the same backed-up epoch (0: none), or all stop
    with one line (workers.py, epoch_mismatch). One all-gather of (worker, epoch) under the
    strategy: every worker learns every epoch, so all of them stop, none waits for another."""
    import tensorflow as tf

    from portrait_core.training.workers import epoch_mismatch, read_tf_config

    worker = read_tf_config()
    with scope():
        strategy = tf.distribute.get_strategy()

        @tf.function  # the collective in a graph, as TensorFlow advises (eagerly, it warns)
        def gather():
            mine = strategy.run(lambda: tf.constant([[float(worker.position), float(epoch)]]))
            return strategy.gather(mine, axis=0)  # one row per replica

        gathered = gather().numpy()
    epochs = {int(p): int(e) for p, e in gathered}
    problem = epoch_mismatch(worker, epochs, run.path, config.out)
    if problem:
        raise ValueError(problem)


def _is_chief(config: TrainConfig) -> bool:
    if config.distribute != "multiworker":
        return True
    from portrait_core.training.workers import read_tf_config

    return read_tf_config().is_chief


def learning_rate_for(config: TrainConfig, steps_per_epoch: int):
    """The config's learning rate: a number (plateau), or a `schedules.WarmupCosine` (cosine):
    a linear warm-up from 0 to lr over warmup_epochs, then a cosine down to 0 at the last step
    (Loshchilov & Hutter 2017, without restarts). The last step is the last epoch's, or, with
    a time budget, the last that fits in it (callbacks.TimeBudget moves it as it measures)."""
    if config.schedule != "cosine":
        return config.lr
    from portrait_core.training.schedules import WarmupCosine

    warm_epochs = min(config.warmup_epochs, config.epochs - 1)
    return WarmupCosine(config.lr, warm_epochs * steps_per_epoch, config.epochs * steps_per_epoch)


def optimizer_for(config: TrainConfig, steps_per_epoch: int, learning_rate=None):
    """The config's optimizer, with `learning_rate` (by default `learning_rate_for`'s).

    adamw leaves batch-norm parameters and biases out of the weight decay, as is usual:
    shrinking them regularises nothing.
    """
    import keras

    lr = learning_rate_for(config, steps_per_epoch) if learning_rate is None else learning_rate
    if config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
        optimizer.exclude_from_weight_decay(var_names=["_bn", "bias"])
        return optimizer
    return keras.optimizers.Adam(lr)


def evaluate_run(
    run_id: str | Path, data: str | None = None, runs: str | Path | None = None
) -> dict:
    """Metrics of a run's best model: on its own test split, or on all of another data set,
    with the calibration error before and after the run's temperatures (where it has them) and
    the robustness table on the same pictures."""
    from portrait_core.calibration import read_temperatures
    from portrait_core.data.formats import load_dataset
    from portrait_core.data.table import label_codes
    from portrait_core.evaluate import evaluate_model
    from portrait_core.faithfulness import evaluate_faithfulness
    from portrait_core.models.catalog import get_info
    from portrait_core.models.layers import load_saved_model
    from portrait_core.paths import RUNS
    from portrait_core.pipeline import InputPipeline, SplitData
    from portrait_core.robustness import evaluate_robustness

    run = RunStore(runs or RUNS).get(run_id)
    if not run.model_file.exists():
        raise ValueError(f"run {run.id} has no model yet")
    config = TrainConfig.from_dict(run.config["train"])
    same = data is None or Path(data).resolve() == Path(config.data).resolve()
    if same:
        _, parts, _ = prepare_data(config)
        evaluated, split = parts["test"], "test"
        train_codes = parts["train"].codes
    else:
        dataset = load_dataset(data)
        if config.faces:  # trained on face crops: the other data set is cropped the same way
            from portrait_core.data.face_crops import face_crops
            from portrait_core.data.split import load_or_make_split

            splits, split_path = load_or_make_split(dataset, config.seed, config.split)
            dataset, _ = face_crops(dataset, splits, split_path)
        table = dataset.table
        evaluated = SplitData(
            table["path"].to_numpy(), {a: label_codes(table, a) for a in config.attributes}
        )
        split = "all"
        _, parts, _ = prepare_data(config)
        train_codes = parts["train"].codes
    pipeline = InputPipeline(
        train=parts["train"],
        val=evaluated,
        test=evaluated,
        image_size=config.image_size,
        batch_size=config.batch_size,
    )
    model = load_saved_model(run.model_file)
    metrics = evaluate_model(
        model,
        pipeline.eval_dataset("test"),
        evaluated.codes,
        train_codes,
        temperatures=read_temperatures(run.path),
    )
    metrics["robustness"] = evaluate_robustness(
        model,
        evaluated.paths,
        evaluated.codes,
        config.image_size,
        metrics["attributes"],
        split=split,
        batch_size=config.batch_size,
    )
    metrics["faithfulness"] = evaluate_faithfulness(
        model,
        evaluated.paths,
        config.image_size,
        get_info(config.model).cam_layer,
        config.model,
        split=split,
    )
    trained = run.metrics or {}
    metrics.update(
        split=split,
        data=str(Path(data or config.data).resolve()),
        train_seconds=trained.get("train_seconds"),
        best_epoch=trained.get("best_epoch"),
    )
    pipeline.close()
    if same:
        record_evaluation(run, metrics)
    return metrics


# What `evaluate` brings up to date in a run's metrics.json: a run trained before calibration
# or the robustness table came in gets them, and Compare shows them. The rest (training time,
# best epoch, epochs run) stays as training wrote it.
EVALUATED_SECTIONS = ("attributes", "robustness", "faithfulness", "n_images", "ms_per_image")


def record_evaluation(run: Run, metrics: dict) -> None:
    """Write an evaluation on the run's own test split back into its metrics.json (atomically,
    so an interrupted write leaves the old file whole). Another data set's scores are not
    written: they describe that data, not the run."""
    recorded = dict(run.metrics or {})
    recorded.update({k: metrics[k] for k in EVALUATED_SECTIONS if k in metrics})
    recorded["evaluated"] = time.time()
    write_json_atomic(run.path / "metrics.json", recorded)
