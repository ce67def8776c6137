"""Portrait Lab on the command line. Each subcommand calls one function of portrait_core.

    python -m portrait_core synth --out data/synthetic --n 3000 --seed 0 --size 128
    python -m portrait_core stats data/synthetic            # readable tables
    python -m portrait_core stats data/synthetic --json     # one JSON object

Bad input prints one line on stderr and exits with status 2; nothing already saved is touched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from portrait_core.images import BadImage

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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m portrait_core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("synth", help="write the synthetic montage data set (AI Hub layout)")
    p.add_argument("--out", required=True, help="folder to write N.png + N.json pairs into")
    p.add_argument("--n", type=_positive_int, default=3000, help="number of pictures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_positive_int, default=128, help="picture side in pixels")
    p.add_argument("--balanced", action="store_true", help="even classes instead of the study's")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("stats", help="class counts overall and per split")
    p.add_argument("data", help="data folder (AI Hub, CSV manifest, UTKFace or CelebA)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--split", type=_fractions, default=(0.70, 0.15, 0.15), help="e.g. 70/15/15")
    p.set_defaults(func=cmd_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, BadImage, ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
