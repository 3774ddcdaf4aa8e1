"""Command line: ``python -m shapedmap demo`` and ``python -m shapedmap docs MODULE``."""

from __future__ import annotations

import argparse
import importlib
import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch the subcommands; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m shapedmap", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run the seed examples, show derived axes, a caught bug and timings")
    docs = commands.add_parser(
        "docs",
        help="document the shapes of every batched function in a module and its submodules",
        description="Write the shape contract of every function made by shapedmap.batched in MODULE "
        "and its submodules: layouts per parameter, batch dims, in_axes/out_axes per vmap.",
    )
    docs.add_argument("module", metavar="MODULE", help="an importable module or package, e.g. shapedmap.examples")
    docs.add_argument("--format", choices=("markdown", "rst", "json"), default="markdown", help="default: markdown")
    docs.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        from ._demo import main as demo

        return demo()
    return _docs(arguments.module, arguments.format, arguments.output)  # argparse allows only these two


def _docs(module_name: str, format: str, output: str | None) -> int:
    """``python -m shapedmap docs``: 0 on success, 2 when a module does not import."""
    from ._describe import document_module
    from ._errors import SpecError

    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as error:  # the user's module: any exception at import is theirs to see
        print(
            f"python -m shapedmap docs: cannot import {module_name}: {type(error).__name__}: {error}", file=sys.stderr
        )
        if isinstance(error, ModuleNotFoundError) and error.name == module_name.split(".")[0]:
            print(
                f"  run it from the directory that contains {error.name}, or add that directory to PYTHONPATH",
                file=sys.stderr,
            )
        return 2
    try:
        text = document_module(module, format)
    except ImportError as error:  # a submodule
        print(f"python -m shapedmap docs: {error}", file=sys.stderr)
        return 2
    except SpecError as error:  # a batched function whose annotations never resolve
        print(f"python -m shapedmap docs: {error}", file=sys.stderr)
        return 1
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as error:
        print(f"python -m shapedmap docs: cannot write {output}: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
