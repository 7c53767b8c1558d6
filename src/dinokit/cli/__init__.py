"""The `dinokit` command: one module per command (its arguments, a call into a job, printing); errors
become exit statuses here. Every command also runs as `python -m dinokit`."""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from ..errors import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, TrainingDiverged, exit_status
from . import (
    bench,
    classify,
    curate,
    dedup,
    depth,
    download,
    embed,
    eval,
    export,
    finetune,
    index,
    info,
    match,
    models,
    samples,
    search,
    segment,
    serve,
    train,
    train_seg,
    viz,
)
from .options import is_main_process

COMMANDS = (models, download, info, samples, embed, index, search, dedup, viz, classify, finetune, eval, curate, depth,
            segment, train_seg, match, train, bench, export, serve)

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FATAL", "EXIT_USAGE", "EXIT_PARTIAL"]


class HelpWithDefaults(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says it or there is none."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if default in (None, False, argparse.SUPPRESS) or "default" in text or "%(default)" in text or not action.option_strings:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dinokit", description="DINOv2 models, features and tools",
                                     formatter_class=HelpWithDefaults)
    parser.add_argument("--version", action="version", version=f"dinokit {_version()}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (anywhere on the command line)")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    for command_parser in _all_parsers(parser):
        command_parser.formatter_class = HelpWithDefaults
    return parser


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _all_parsers(child)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dinokit")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if argv[:1] == ["bench"]:  # its own parser: `dinokit bench --help`
        from ..bench import main as bench_main

        try:
            return bench_main(argv[1:])
        except SystemExit as e:  # its argparse: 2 on usage errors, 0 on --help
            return int(e.code or 0)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    if not is_main_process():  # under torchrun, rank 0 alone prints results
        sys.stdout = open(os.devnull, "w")
    warnings.formatwarning = lambda message, *_, **__: f"dinokit {args.command}: warning: {message}\n"
    try:
        if getattr(args, "device", None):  # every command's --device, checked before any work
            from ..runtime.backends import require_device

            require_device(args.device)
        return args.func(args)
    except BrokenPipeError:  # `dinokit models | head`: the reader left; not an error
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
    except Exception as e:
        status = exit_status(e)
        if status is None or debug:
            raise
        print(f"dinokit {args.command}: {'stopped' if isinstance(e, TrainingDiverged) else 'error'}: "
              f"{_one_line(e)} (--debug shows where)", file=sys.stderr)
        return status


def _one_line(error: BaseException) -> str:
    """The message of an error on one line (a path with a newline stays readable)."""
    return (str(error) or type(error).__name__).replace("\n", " ")
