"""Command line: ``python -m shapedmap demo``, ``python -m shapedmap docs MODULE`` and
``python -m shapedmap verify PACKAGE...``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch the subcommands; returns the exit code.

    Example:
        >>> import sys, types
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> def total(x: Float[Array, "n"]) -> Float[Array, ""]:
        ...     return jnp.sum(x)
        >>> sys.modules["sums"] = types.ModuleType("sums")  # as if imported
        >>> sys.modules["sums"].totals = batched(total, "b")
        >>> main(["docs", "sums", "--format", "rst"])  # doctest: +ELLIPSIS
        Shapes of sums
        ==============
        <BLANKLINE>
        ``totals``
        ----------
        ...
        0
        >>> del sys.modules["sums"]
    """
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
    verify = commands.add_parser(
        "verify",
        help="prove the shape contract of every batched function in packages, for every size (a CI linter)",
        description="Trace every function made by shapedmap.batched in each PACKAGE and its submodules with "
        "symbolic sizes (shapedmap.testing.verify): one 'file:line: function: outcome' line each. Exit status 0 "
        "when every contract holds, 1 when some do not, 2 for a usage error.",
    )
    verify.add_argument("packages", nargs="+", metavar="PACKAGE", help="importable packages or modules, e.g. mypkg")
    verify.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    verify.add_argument(
        "--strict", action="store_true", help="a function skipped for want of a value (given=) fails too"
    )
    arguments = parser.parse_args(argv)  # a usage error exits with status 2
    if arguments.command == "demo":
        from ._demo import main as demo

        return demo()
    if arguments.command == "verify":
        from ._verify_cli import run as run_verify

        return run_verify(arguments.packages, as_json=arguments.json, strict=arguments.strict)
    from ._docs_cli import run  # argparse allows only these three commands

    return run(arguments.module, arguments.format, arguments.output)


if __name__ == "__main__":
    sys.exit(main())
