"""Portrait Lab on the command line. Each subcommand calls one function of portrait_core.

    python -m portrait_core synth --out data/synthetic --n 6000 --seed 0 --size 128
    python -m portrait_core stats data/synthetic            # readable tables
    python -m portrait_core stats data/synthetic --json     # one JSON object
    python -m portrait_core train --data data/synthetic --model small_resnet \
        --attributes gender,age,face_shape,hairstyle --epochs 10
    python -m portrait_core train --model resnet50 --preset study --attributes hairstyle
    python -m portrait_core sweep --model cnn_custom --attributes gender,age --trials 20 \
        [--space space.yaml] [--timeout 120] [--name NAME]   # again: resumes NAME
    python -m portrait_core stop RUN_ID
    python -m portrait_core train --resume RUN_ID          # a killed run, from its last epoch
    TF_CONFIG='{"cluster": ...}' python -m portrait_core train --distribute multiworker \
        --run-name NAME ...                                 # on every machine (README)
    python -m portrait_core evaluate RUN_ID [--data OTHER_FOLDER]
    python -m portrait_core predict face.jpg --model artifacts/default --json
    python -m portrait_core predict *.jpg --model RUN_ID --explain gradcam --out overlays/
    python -m portrait_core predict group.jpg --faces          # each face found, labelled
    python -m portrait_core predict photos/ --csv labels.csv [--faces] [--resume]
    python -m portrait_core publish RUN_ID --dest artifacts/default
    python -m portrait_core export artifacts/default --format onnx --out exports/default
    python -m portrait_core export RUN_ID --format tflite --quantize --out exports/small

Bad input prints one line on stderr and exits with status 2; nothing already saved is touched.
Arguments and files are checked before TensorFlow is imported, so bad input answers at once;
TensorFlow's start-up logging is silenced (`--verbose` keeps it, and its warnings).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from portrait_core.images import IMAGE_SUFFIXES, BadImage, open_rgb
from portrait_core.models.catalog import CAM_METHODS, CATALOG, TRAIN_DEFAULT
from portrait_core.tf_startup import quiet_tensorflow
from portrait_core.training.config import AUGMENTATIONS, DISTRIBUTE, OPTIMIZERS, SCHEDULES

EXIT_BAD_INPUT = 2


class UserError(Exception):
    """Bad input from the user: reported as one line, exit status 2, no traceback."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage too; we want one line
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) / 100 for p in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not like 70/15/15") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not three numbers like 70/15/15")
    return parts


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def cmd_synth(args: argparse.Namespace) -> int:
    from portrait_core.synth import generate

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise UserError(f"{out} is not empty; pass --force to write into it anyway")
    written = generate(out, n=args.n, seed=args.seed, size=args.size, balanced=args.balanced)
    print(f"wrote {written:,} pictures to {out}", file=sys.stderr)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from portrait_core.data.formats import load_dataset
    from portrait_core.data.stats import dataset_stats, format_stats

    stats = dataset_stats(load_dataset(args.data), seed=args.seed, fractions=args.split)
    print(json.dumps(stats, ensure_ascii=False, indent=2) if args.json else format_stats(stats))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from portrait_core.training.config import TrainConfig, make_config
    from portrait_core.training.runs import Run, read_json
    from portrait_core.training.train import run_training

    resume = False
    if args.resume:  # a killed, failed or cancelled run, from its last backed-up epoch
        from portrait_core.training.runs import RunStore

        run = RunStore(args.out).get(args.resume)
        # launched by the app's Resume button: the run reads "queued" until this process runs
        problem = run.resume_problem if not args.launched else None
        if problem or run.backed_up_epoch == 0:
            raise UserError(problem or f"run {run.id} has no backed-up epoch to resume from")
        config = TrainConfig.from_dict(run.config["train"])
        if config.distribute == "multiworker":
            raise UserError(
                f"run {run.id} is a multiworker run: start every worker again with its first "
                "command, and it resumes from the last epoch all of them backed up"
            )
        resume = True
    elif args.from_run:  # launched by the app: the request is in the run folder
        run = Run(Path(args.from_run))
        config = TrainConfig.from_dict(read_json(run.path / "request.json", {}))
    else:
        options = {
            k: v
            for k, v in (
                ("unfreeze", args.unfreeze),
                ("weights", args.weights),
                ("pooling", args.pooling),
                ("width", args.width),
                ("dropout", args.dropout),
            )
            if v is not None
        }
        config = make_config(
            str(args.data),
            args.model,
            args.preset,
            attributes=args.attributes,
            image_size=args.image_size,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            balance=args.balance,
            seed=args.seed,
            out=args.out,
            max_steps_per_epoch=args.max_steps,
            max_minutes=args.max_minutes,
            options=options,
            augment=False if args.no_augment else None,
            augmentation=args.augmentation,
            degrade_share=args.degrade_share,
            optimizer=args.optimizer,
            weight_decay=args.weight_decay,
            schedule=args.schedule,
            warmup_epochs=args.warmup_epochs,
            label_smoothing=args.label_smoothing,
            ordinal_spread=args.ordinal_spread,
            age_spread=args.age_spread,
            class_weights=False if args.no_class_weights else None,
            distribute=args.distribute,
            faces=True if args.faces else None,
        )
        run = None
        from portrait_core.data.formats import detect_format

        detect_format(config.data)  # a missing or unreadable data set: before any run folder
        if config.distribute == "multiworker":  # every worker names the run alike (workers.py)
            from portrait_core.training.workers import read_tf_config, worker_run

            worker = read_tf_config()
            run, resume = worker_run(config, worker, args.run_name)
        elif args.run_name:
            raise UserError("--run-name names a --distribute multiworker run")
    quiet_tensorflow(args.verbose)
    run = run_training(config, run, resume=resume)
    state = run.status.get("state")
    print(f"{state}: {run.path}", file=sys.stderr)
    if config.distribute == "multiworker":
        from portrait_core.training.workers import finish_worker, read_tf_config

        finish_worker(run, read_tf_config())
    return 0 if state in ("completed", "cancelled") else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    from portrait_core.paths import DEFAULT_DATA
    from portrait_core.sweeps.space import default_space, read_space
    from portrait_core.sweeps.sweep import Sweep, SweepSpec, SweepStore, best_trial

    if args.from_sweep:  # launched by the app: the sweep's folder is ready
        sweep = Sweep(Path(args.from_sweep))
    else:  # a new sweep, or one to resume: what is not given again comes from its folder
        store = SweepStore.beside(args.out)
        model = args.model or TRAIN_DEFAULT
        attributes = (args.attributes or "gender,age,face_shape,hairstyle").split(",")
        name = args.name or "-".join([model, *(a.split("_")[0] for a in attributes)])
        try:
            before = store.get(name)
        except FileNotFoundError:
            before = None
        if before is None and args.trials is None:
            raise UserError("a new sweep needs --trials N (how many trials to finish)")
        old = before.spec if before else None
        spec = SweepSpec(
            name=name,
            data=args.data or (old.data if old else str(DEFAULT_DATA)),
            model=args.model or (old.model if old else model),
            attributes=args.attributes or (old.attributes if old else attributes),
            trials=args.trials or old.trials,
            runs=args.out,
            seed=args.seed if args.seed is not None else (old.seed if old else 0),
            timeout_minutes=args.timeout,
        )
        if args.space:
            space = read_space(args.space)
        else:
            space = before.space if before else default_space(spec.model)
        from portrait_core.data.formats import detect_format

        detect_format(spec.data)  # a missing or unreadable data set: before any sweep folder
        sweep = store.prepare(spec, space)
    quiet_tensorflow(args.verbose)
    from portrait_core.sweeps.runner import run_sweep

    state = run_sweep(sweep, log=lambda line: print(line, file=sys.stderr, flush=True))
    rows = sweep.trials()
    best = best_trial(rows)
    done = sum(r["state"] in ("completed", "pruned") for r in rows)
    summary = f"{state}: {done} of {sweep.spec.trials} trials finished in {sweep.path}"
    if best:
        summary += f"; best trial {best['trial']} ({best['objective']:.3f}): run {best['run']}"
    print(summary, file=sys.stderr)
    return 0 if state in ("completed", "stopped") else 1


def cmd_stop(args: argparse.Namespace) -> int:
    from portrait_core.training.runs import RunStore

    run = RunStore(args.out).get(args.run)
    run.request_stop()
    print(f"stop requested for {run.id}", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from portrait_core.data.formats import detect_format
    from portrait_core.training.runs import RunStore
    from portrait_core.training.train import evaluate_run

    RunStore(args.out).get(args.run)  # a run that does not exist: before TensorFlow
    if args.data:
        detect_format(args.data)
    quiet_tensorflow(args.verbose)
    metrics = evaluate_run(args.run, args.data, runs=args.out)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from portrait_core.batch_predict import list_pictures
    from portrait_core.predict import load_predictor, read_model_config

    read_model_config(args.model)  # no such model, or an unusable one: before TensorFlow
    if args.explain and not args.out:
        raise UserError("--explain needs --out DIR to write the overlays into")
    pictures = list_pictures(args.images)
    if not pictures:
        raise UserError(f"no pictures ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(args.images)}")
    if args.csv:
        return _predict_to_csv(args, pictures)
    if args.resume:
        raise UserError("--resume continues a --csv file; name one with --csv")
    predictor = None  # loaded at the first good picture: bad files answer without TensorFlow
    results, bad = {}, 0
    for path in pictures:
        name = str(path)
        try:
            photo = open_rgb(path)
        except BadImage as exc:
            print(f"error: {exc}", file=sys.stderr)
            bad += 1
            continue
        if predictor is None:
            quiet_tensorflow(args.verbose)
            predictor = load_predictor(args.model)
        if args.faces:
            results[name] = _label_faces(predictor, photo, name, args)
        else:
            results[name] = _label(predictor, photo, name, args)
            if not args.json:
                print(f"{name}: {_labels_line(results[name])}")
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return EXIT_BAD_INPUT if bad else 0


def _labels_line(result: dict) -> str:
    return ", ".join(f"{a}={r['label']} ({r['probs'][r['label']]:.2f})" for a, r in result.items())


def _label(predictor, picture, name: str, args, stem: str | None = None) -> dict:
    """One picture's (or one face crop's) labels, with its overlays written where asked."""
    from portrait_core.explain import overlay

    result = predictor.predict(picture)
    if args.explain:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        labels = {a: r["label"] for a, r in result.items()}  # explain what was predicted
        for attr, heat in predictor.explain(picture, args.explain, classes=labels).items():
            target = out / f"{stem or Path(name).stem}_{attr}_{args.explain.replace('+', 'p')}.png"
            overlay(picture, heat).save(target)
            result[attr]["overlay"] = str(target)
    return result


def _label_faces(predictor, photo, name: str, args) -> dict:
    """{"faces": [{"face": n, "box": [x, y, w, h], "confidence": c, "labels": {...}}]}."""
    from portrait_core.faces import detect_faces

    faces = []
    for n, face in enumerate(detect_faces(photo), start=1):
        crop = predictor.crop(photo, face)
        labels = _label(predictor, crop, name, args, stem=f"{Path(name).stem}_face{n}")
        faces.append(
            {
                "face": n,
                "box": list(face.box),
                "confidence": round(face.confidence, 4),
                "labels": labels,
            }
        )
        if not args.json:
            print(f"{name} face {n} at {tuple(face.box)}: {_labels_line(labels)}")
    if not faces and not args.json:
        print(f"{name}: no face found (without --faces the whole picture is labelled)")
    return {"faces": faces}


def _predict_to_csv(args: argparse.Namespace, pictures: list[Path]) -> int:
    from portrait_core.batch_predict import predict_pictures
    from portrait_core.predict import load_predictor

    csv_path = Path(args.csv)
    if csv_path.exists() and not args.resume:  # before TensorFlow: nothing saved is overwritten
        raise UserError(f"{csv_path} exists: pass --resume to continue it, or name another file")
    if csv_path.is_dir():
        raise UserError(f"{csv_path} is a folder; --csv names a file")
    quiet_tensorflow(args.verbose)
    predictor = load_predictor(args.model)
    counts = predict_pictures(
        pictures,
        predictor,
        csv_path,
        faces=args.faces,
        explain=args.explain,
        out=args.out,
        resume=args.resume,
        progress=not args.no_progress,
    )
    print(
        f"{counts['rows']} rows for {counts['pictures']} pictures written to {csv_path}"
        f" ({counts['skipped']} already there, {counts['errors']} with an error)",
        file=sys.stderr,
    )
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from portrait_core.training.publish import publish
    from portrait_core.training.runs import RunStore

    run = RunStore(args.out).get(args.run)
    quiet_tensorflow(args.verbose)
    dest = publish(run, args.dest)
    print(f"published {args.run} to {dest}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from portrait_core.export import LABELS_FILE, check_destination, check_format, export_model
    from portrait_core.predict import read_model_config

    check_format(args.format, args.quantize)  # bad input: before TensorFlow
    folder, _ = read_model_config(args.run)
    out = check_destination(args.out, args.force)
    quiet_tensorflow(args.verbose)
    artifact = export_model(folder, args.format, out, force=args.force, quantize=args.quantize)
    print(f"exported {folder} to {artifact} (labels in {out / LABELS_FILE})", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m portrait_core", description=__doc__.split("\n")[0])
    common = Parser(add_help=False)
    common.add_argument(
        "--verbose", action="store_true", help="keep TensorFlow's start-up logging and warnings"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def add(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    p = add("synth", help="write the synthetic montage data set (AI Hub layout)")
    p.add_argument("--out", required=True, help="folder to write N.png + N.json pairs into")
    p.add_argument("--n", type=_positive_int, default=6000, help="number of pictures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_positive_int, default=128, help="picture side in pixels")
    p.add_argument("--balanced", action="store_true", help="even classes instead of the study's")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.set_defaults(func=cmd_synth)

    p = add("stats", help="class counts overall and per split")
    p.add_argument("data", help="data folder (AI Hub, CSV manifest, UTKFace or CelebA)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--split", type=_fractions, default=(0.70, 0.15, 0.15), help="e.g. 70/15/15")
    p.set_defaults(func=cmd_stats)

    from portrait_core.paths import DEFAULT_DATA, RUNS

    p = add("train", help="train a model into a run folder")
    p.add_argument(
        "--data", default=str(DEFAULT_DATA), help="data folder (default: the synthetic set)"
    )
    p.add_argument(
        "--model",
        default=TRAIN_DEFAULT,
        help=f"{', '.join(CATALOG)} (default: {TRAIN_DEFAULT}, the recipe for real portraits)",
    )
    p.add_argument(
        "--attributes", default="gender,age,face_shape,hairstyle", help="comma-separated"
    )
    p.add_argument("--preset", default="default", choices=("default", "study"))
    p.add_argument("--image-size", type=_positive_int)
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--lr", type=float)
    p.add_argument("--unfreeze", type=int, help="resnet50: train only the last N layers")
    p.add_argument("--weights", help="resnet50: imagenet, none, or a weights file")
    p.add_argument(
        "--pooling", choices=("flatten", "pool_flatten", "gap"), help="cnn_custom / resnet50 head"
    )
    p.add_argument("--width", type=_positive_int, help="small_resnet: channels of its first stage")
    p.add_argument("--dropout", type=float, help="mlp_custom, alexnet, small_resnet: dropout rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="adam (the study) or adamw")
    p.add_argument("--weight-decay", type=float, help="adamw's weight decay")
    p.add_argument("--schedule", choices=SCHEDULES, help="plateau (the study) or cosine")
    p.add_argument("--warmup-epochs", type=int, help="cosine: epochs of linear warm-up")
    p.add_argument("--label-smoothing", type=float, help="e.g. 0.1")
    p.add_argument(
        "--ordinal-spread",
        type=float,
        help="age bands: soft targets over neighbouring bands, a Gaussian this wide in bands "
        "(e.g. 0.6, as measured in README Real faces); 0 = the label alone",
    )
    p.add_argument(
        "--age-spread",
        type=float,
        metavar="YEARS",
        help="age bands: soft targets from exact ages where the data has them, a Gaussian this "
        "many years wide over the bands it overlaps (e.g. 3); 0 = the band alone",
    )
    p.add_argument(
        "--augmentation", choices=AUGMENTATIONS, help="study, or photo (crops, colour, blur, JPEG)"
    )
    p.add_argument(
        "--degrade-share",
        type=float,
        metavar="SHARE",
        help="photo augmentation: the share of training pictures blurred, and (rolled apart) "
        "the share at a lower resolution, and JPEG-compressed (0-1; the recipe's own: 0.25, "
        "0.3, 0.3)",
    )
    p.add_argument("--balance", help="oversample one attribute's classes: ATTR or ATTR:COUNT")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--no-class-weights", action="store_true")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-steps", type=_positive_int, help="cap steps per epoch (quick trials)")
    p.add_argument(
        "--max-minutes", type=float, help="time budget for training: no epoch starts past it"
    )
    p.add_argument(
        "--distribute",
        choices=DISTRIBUTE,
        help="mirrored: one model copy per local GPU (TensorFlow's MirroredStrategy); "
        "multiworker: across the machines TF_CONFIG lists (README)",
    )
    p.add_argument(
        "--run-name",
        help="multiworker: the run folder's name, the same on every worker "
        "(default: derived from TF_CONFIG's cluster and the settings)",
    )
    p.add_argument(
        "--faces",
        action="store_true",
        help="crop each picture to its face first (uncropped photos; cached beside the data)",
    )
    p.add_argument("--out", default=str(RUNS), help="folder for run folders")
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a killed, failed or cancelled run from its last finished epoch",
    )
    p.add_argument("--from-run", help=argparse.SUPPRESS)
    p.add_argument("--launched", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)

    p = add("sweep", help="tune a model's settings: many runs, each chosen by Optuna")
    p.add_argument("--data", help="data folder (default: the synthetic set)")
    p.add_argument("--model", help=f"{', '.join(CATALOG)} (default: {TRAIN_DEFAULT})")
    p.add_argument("--attributes", help="comma-separated (default: all four)")
    p.add_argument(
        "--trials", type=_positive_int, help="trials to finish, completed or pruned, in all"
    )
    p.add_argument(
        "--timeout", type=float, help="minutes: no trial starts after them (the last finishes)"
    )
    p.add_argument("--space", help="a YAML or JSON search space (default: the model's own)")
    p.add_argument("--name", help="the sweep's name (default: model and attributes); again: resume")
    p.add_argument("--seed", type=int, help="the split, weights and sampler of every trial (0)")
    p.add_argument("--out", default=str(RUNS), help="folder for the trials' run folders")
    p.add_argument("--from-sweep", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_sweep)

    p = add("stop", help="stop a running run after its current batch")
    p.add_argument("run", help="run id or folder")
    p.add_argument("--out", default=str(RUNS))
    p.set_defaults(func=cmd_stop)

    p = add("evaluate", help="test metrics of a run (or on another data set)")
    p.add_argument("run", help="run id or folder")
    p.add_argument("--data", help="another data folder: all of it is scored")
    p.add_argument("--out", default=str(RUNS))
    p.set_defaults(func=cmd_evaluate)

    p = add("predict", help="label photos or folders of them (and explain them)")
    p.add_argument("images", nargs="+", help="picture files or folders")
    p.add_argument("--model", default="default", help="run id, run folder or model folder")
    p.add_argument(
        "--explain", choices=CAM_METHODS, help="hirescam, gradcam, ... (saliency for MLPs)"
    )
    p.add_argument("--out", help="folder for overlay PNGs")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--faces", action="store_true", help="find the faces first and label each one (MTCNN)"
    )
    p.add_argument("--csv", help="write one row per picture (or face) to this CSV file")
    p.add_argument(
        "--resume", action="store_true", help="continue a --csv file, skipping its pictures"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (with --csv)")
    p.set_defaults(func=cmd_predict)

    p = add("publish", help="copy a finished run to a model folder with a model card")
    p.add_argument("run", help="run id or folder")
    p.add_argument("--dest", default="artifacts/default")
    p.add_argument("--out", default=str(RUNS))
    p.set_defaults(func=cmd_publish)

    from portrait_core.export import FORMATS

    p = add("export", help="the model for other runtimes (SavedModel, TFLite, ONNX), with labels")
    p.add_argument("run", help="run id, run folder or model folder (e.g. artifacts/default)")
    p.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="; ".join(f"{f.name}: for {f.runtime}" for f in FORMATS.values()),
    )
    p.add_argument("--out", required=True, help="folder for the artifact and its labels.json")
    p.add_argument(
        "--quantize", action="store_true", help="tflite: int8 weights, about a quarter the size"
    )
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.set_defaults(func=cmd_export)
    return parser


def one_line(exc: Exception) -> str:
    """A message as one line: a list under a line ending in ':' is folded into it by name.

    'X does not exist. It reads these formats:\n- aihub: ...\n- utkface: ...' becomes
    'X does not exist. It reads these formats: aihub, utkface.'
    """
    first, *rest = str(exc).strip().splitlines() or [type(exc).__name__]
    items = [line[2:].split(":")[0] for line in rest if line.startswith("- ")]
    if first.endswith(":") and items:
        return f"{first} {', '.join(items)}."
    return first


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, BadImage, ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # A multiworker run whose peer died: TensorFlow's heartbeat check raises this on the
        # workers left (tests/test_multiworker.py). Not bad input (status 1), but one line.
        if type(exc).__name__ != "UnavailableError" or "tensorflow" not in type(exc).__module__:
            raise
        print(
            f"error: another worker stopped ({one_line(exc)}); start every worker again with the "
            "same command and TF_CONFIG: the run resumes from its last backed-up epoch",
            file=sys.stderr,
        )
        return 1
