"""Command line: ``python -m shapedmap demo``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch the subcommands; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m shapedmap", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run the seed examples, show derived axes, a caught bug and timings")
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        from .demo import main as demo

        return demo()
    parser.error(f"unknown command {arguments.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
