"""The ``routers`` / ``kubectl routers`` command line.

Machine output goes to stdout, messages to stderr; user errors are one line plus a hint, never a
traceback. Exit codes: 0 ok, 1 usage/config/plan/plugin error, 2 unsupported instruction,
3 conflict or API error (cluster commands), 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from routers.cli._app import cli
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
    except click.exceptions.Abort:
        _fail("interrupted")
        return 130
    except click.ClickException as exc:
        _fail(exc.format_message(), "run with --help for usage")
        return EXIT_ERROR
    except UnsupportedError as exc:
        _fail(str(exc), exc.hint)
        return EXIT_UNSUPPORTED
    except ConfigError as exc:
        _fail(str(exc), "fix the fields named above; `routers schema` prints the accepted format")
        return EXIT_ERROR
    except (ConflictError, ApplyError) as exc:
        _fail(str(exc))
        return EXIT_API
    except (PlanError, PluginError, RoutersError) as exc:
        _fail(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    return result if isinstance(result, int) else EXIT_OK


def entrypoint() -> None:
    sys.exit(main())
