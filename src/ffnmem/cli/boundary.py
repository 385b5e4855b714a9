"""The CLI's error boundary: every way a command can end becomes an exit code and at most one line.

- user errors (:class:`FfnmemError`, and file-system errors such as a read-only output folder)
  print ``error: ...`` and exit 2 (or the error's own code);
- usage errors print click's usage line, its ``Try ... --help`` hint and one ``Error:`` line, exit 2;
- Ctrl-C prints ``interrupted: ...`` and exits 130, wherever it lands;
- anything else is a bug: one ``internal error: ...`` line and exit 1, the traceback only with
  ``FFNMEM_DEBUG=1``.

Typer >= 0.20 bundles its own copy of click (``typer._click``) whose exception classes are not
click's, so the classes are collected from every module that may define them.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from ffnmem.core.errors import FfnmemError

INTERRUPTED = 130
_MODULES = ("click.exceptions", "typer._click.exceptions", "typer.exceptions", "typer.core")


def _classes(name: str) -> tuple[type, ...]:
    """Every class called ``name`` among the click-like exception modules that import here."""
    found: list[type] = []
    for module in _MODULES:
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return tuple(found)


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run(app: Callable[[], object], console: Console) -> NoReturn:
    """Call ``app()`` (a Typer app in non-standalone mode) and exit with the code its ending calls for."""
    click_error, abort, exit_ = _classes("ClickException"), _classes("Abort"), _classes("Exit")
    try:
        rv = app()
    except FfnmemError as exc:
        _error(console, "error:", str(exc))
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, *abort):
        _interrupted(console)
    except exit_ as exc:
        sys.exit(exc.exit_code)
    except click_error as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ValidationError as exc:  # a job's parameters built from options: name the first bad one
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "parameters"
        _error(console, "error:", f"{where}: {err.get('msg', 'invalid value')} (got {err.get('input')!r})")
        sys.exit(2)
    except OSError as exc:  # a file or folder the user named: unreadable, read-only, a directory, full disk
        _error(console, "error:", _os_error(exc))
        sys.exit(2)
    except UnicodeDecodeError as exc:
        _error(console, "error:", f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8")
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("FFNMEM_DEBUG"):
            traceback.print_exc()
        _error(console, "internal error:", f"{type(exc).__name__}: {_one_line(str(exc))} "
                                            "(set FFNMEM_DEBUG=1 for the traceback)")
        sys.exit(1)
    # Typer turns Ctrl-C into Exit(130) and, in non-standalone mode, *returns* the code.
    if rv == INTERRUPTED:
        _interrupted(console)
    sys.exit(rv if isinstance(rv, int) else 0)


def _interrupted(console: Console) -> NoReturn:
    _error(console, "interrupted:", "stopped by Ctrl-C; results already written are intact")
    sys.exit(INTERRUPTED)


def _os_error(exc: OSError) -> str:
    what = exc.strerror or _one_line(str(exc)) or type(exc).__name__
    if exc.filename is None:
        return what
    names = f"{exc.filename} → {exc.filename2}" if exc.filename2 else str(exc.filename)
    return f"{names}: {what} (check the path and its permissions)"


def _error(console: Console, label: str, message: str) -> None:
    """One line on stderr; the message is printed literally (no Rich markup, no wrapping)."""
    console.print(Text.assemble((label, "red"), " ", _one_line(message, 2000)), soft_wrap=True, highlight=False)
