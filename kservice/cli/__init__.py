"""The ``kservice`` command line: a kubectl-like client of the embedded cluster.

``main(argv)`` builds the argparse tree (the built-in commands of
:mod:`kservice.cli.commands` plus every plugin in the ``kservice.commands`` entry-point
group), runs one command and returns its exit code. The cluster lives in a SQLite file
(``--state``, ``$KSERVICE_STATE``, default ``./.kservice/state.db``); each command is one
transaction on it (:mod:`kservice.cli.state`).

Errors never print a traceback: kservice's own errors print as kubectl prints them
(``The Service "foo" is invalid: ...``, ``Error from server (NotFound): ...``,
``error: ...``) and exit 1; Ctrl-C exits 130; a closed pipe (``| head``) exits quietly;
anything else is a bug, reported in one line as an internal error with exit 70
(``KSERVICE_DEBUG=1`` re-raises it with its traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from kservice.cli.state import DEFAULT_STATE, STATE_ENV, open_session
from kservice.errors import (
    AlreadyExists,
    Conflict,
    InternalError,
    InvalidObject,
    KServiceError,
    NotFound,
)

__all__ = ["COMMANDS_GROUP", "IntermixedParser", "build_parser", "main", "open_session"]

COMMANDS_GROUP = "kservice.commands"
#: Set to re-raise unexpected exceptions (with their traceback) instead of a one-line error.
DEBUG_ENV = "KSERVICE_DEBUG"
log = logging.getLogger("kservice.cli")

# kubectl's StatusReason for the server-side errors, printed as "Error from server (X)".
_SERVER_REASONS: tuple[tuple[type[KServiceError], str], ...] = (
    (NotFound, "NotFound"),
    (AlreadyExists, "AlreadyExists"),
    (Conflict, "Conflict"),
    (InternalError, "InternalError"),
)


def _load_plugins(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Every ``kservice.commands`` entry point adds its subcommand; a broken one is skipped."""
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            ep.load()(subparsers)
        except Exception as exc:  # a plugin must never take the CLI down
            log.warning("plugin %r (%s) not loaded: %s: %s", ep.name, ep.value,
                        type(exc).__name__, exc)


class IntermixedParser(argparse.ArgumentParser):
    """kubectl accepts flags anywhere (``get svc -n kube-system kube-dns``): every
    subcommand parser reads its arguments with :meth:`parse_known_intermixed_args`.

    The top-level parser keeps the ordinary parse (it dispatches on the command word, and
    argparse cannot intermix a parser that has subparsers); plugins get this class too,
    through the subparsers' ``parser_class``.
    """

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        except TypeError:
            # A shape intermixing cannot handle (REMAINDER positionals, positionals in a
            # mutually exclusive group): plain parsing, flags before positionals.
            return super().parse_known_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    from kservice.cli import commands

    parser = argparse.ArgumentParser(
        prog="kservice",
        description="A reference emulator of Kubernetes Service networking (pinned to "
                    "Kubernetes v1.34). Commands mirror kubectl's against an embedded "
                    "cluster kept in a local state file.",
    )
    parser.add_argument(
        "--state", default=os.environ.get(STATE_ENV) or DEFAULT_STATE, metavar="PATH",
        help=f"the cluster's state file (env {STATE_ENV}; default {DEFAULT_STATE})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=IntermixedParser)
    sub.required = True
    commands.register(sub)
    _load_plugins(sub)
    for command in {id(p): p for p in sub.choices.values()}.values():
        _accept_state_anywhere(command)
    return parser


def _accept_state_anywhere(parser: argparse.ArgumentParser) -> None:
    """``--state`` after the command word too (``kservice trace ... --state x.db``), as
    kubectl takes its global flags anywhere -- for plugin commands (and their
    subcommands) that do not declare it themselves."""
    if "--state" not in parser._option_string_actions:
        parser.add_argument("--state", default=argparse.SUPPRESS, metavar="PATH",
                            help="the cluster's state file (see kservice --help)")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in {id(c): c for c in action.choices.values()}.values():
                _accept_state_anywhere(child)


def _report(exc: KServiceError) -> None:
    if isinstance(exc, InvalidObject):
        print(exc.kubectl_message(), file=sys.stderr)
        return
    for cls, reason in _SERVER_REASONS:
        if isinstance(exc, cls):
            print(f"Error from server ({reason}): {exc}", file=sys.stderr)
            return
    print(f"error: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="kservice: warning: %(message)s",
                            stream=sys.stderr)
    try:
        parser = build_parser()
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        return int(args.func(args) or 0)
    except KServiceError as exc:
        _report(exc)
        return exc.exit_code
    except SystemExit as exc:
        # argparse's --help and usage errors: a return code for in-process callers.
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        return 130
    except RecursionError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"error: input nested too deeply to process ({exc})", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`kservice get svc | head -1`): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except Exception as exc:
        # A bug in kservice, not the user's input: still no traceback on their terminal,
        # but say so plainly (KSERVICE_DEBUG=1 shows it).
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"error: internal error (a kservice bug, please report it with the command "
              f"line): {type(exc).__name__}: {exc}; set {DEBUG_ENV}=1 for the traceback",
              file=sys.stderr)
        return 70  # EX_SOFTWARE
