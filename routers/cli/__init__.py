"""The ``routers`` / ``kubectl routers`` command line.

Machine output goes to stdout, messages to stderr; user errors are one line plus a hint, never a
traceback. Exit codes: 0 ok, 1 usage/config/plan/plugin error, 2 unsupported instruction,
3 conflict or API error (cluster commands), 4 run aborted, 130 interrupted; ``diff`` uses 1 for
"differences found" and exits above 1 on errors, as ``kubectl diff`` does.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from routers.cli._app import DiffError, cli
from routers.errors import (
    ApplyError,
    ConfigError,
    ConflictError,
    PlanError,
    PluginError,
    RoutersError,
    UnsupportedError,
)

__all__ = ["EXIT_API", "EXIT_ERROR", "EXIT_OK", "EXIT_UNSUPPORTED", "cli", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_UNSUPPORTED = 2
EXIT_API = 3


def _fail(message: str, hint: str | None = None) -> None:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="routers",
            standalone_mode=False,
        )
    except DiffError as exc:  # `diff` keeps 1 for "differences found", like kubectl diff
        return max(report(exc.cause), 2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _fail("interrupted")
        return 130
    except (click.ClickException, RoutersError) as exc:
        return report(exc)
    return result if isinstance(result, int) else EXIT_OK


def report(exc: BaseException) -> int:
    """Print ``exc`` as one line (plus a hint) and return its exit code."""
    if isinstance(exc, click.ClickException):
        _fail(exc.format_message(), "run with --help for usage")
        return EXIT_ERROR
    if isinstance(exc, UnsupportedError):
        _fail(str(exc), exc.hint)
        return EXIT_UNSUPPORTED
    if isinstance(exc, ConfigError):
        _fail(str(exc), "fix the fields named above; `routers schema` prints the accepted format")
        return EXIT_ERROR
    if isinstance(exc, (ConflictError, ApplyError)):
        _fail(str(exc))
        return EXIT_API
    if isinstance(exc, (PlanError, PluginError, RoutersError)):
        _fail(str(exc))
        return EXIT_ERROR
    _fail(f"{type(exc).__name__}: {exc}")
    return EXIT_API


def entrypoint() -> None:
    sys.exit(main())
