"""One runner decides the exit code: errors, Ctrl-C, SIGTERM and broken pipes end here."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn

from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode, exit_code_for

if TYPE_CHECKING:
    from tcpcli.core.errors import TcpcliError
    from tcpcli.render.events import EventWriter


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C, exit 143."""


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _quiet_broken_pipe() -> None:
    """stdout's reader went away (``| head``): exit quietly, without Python's
    "Exception ignored ... BrokenPipeError" at interpreter shutdown."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def interrupted(exc: BaseException) -> bool:
    """Ctrl-C, SIGTERM, or the cancellation asyncio delivers for Ctrl-C: the cases where a
    command still reports what it has measured before exiting 130/143."""
    if isinstance(exc, BaseExceptionGroup):
        return any(interrupted(inner) for inner in exc.exceptions)
    if isinstance(exc, KeyboardInterrupt | Terminated):
        return True
    # Only a run on the event loop can be cancelled (a run without one never loads anyio).
    anyio = sys.modules.get("anyio")
    return anyio is not None and isinstance(exc, anyio.get_cancelled_exc_class())


def report_error(env: Environment, events: EventWriter | None, target: str | None,
                 error: TcpcliError, code: ExitCode | int) -> None:
    """For a command that keeps its own event stream (``connect``, ``listen``): the
    ``error`` event in it and the one line on stderr, left out only when the events go
    to stderr themselves. Commands in a session (:meth:`Environment.start_session`) need
    no such hook: the runner reports through the session."""
    from tcpcli.render.errors import error_fields, error_line

    if events is not None:
        events.emit("error", target, **error_fields(error, code))
    if events is None or events.stream is not env.stderr:
        env.note(error_line(error))


def run(
    main: Callable[[], Awaitable[int]],
    env: Environment,
    *,
    traceback: bool = False,
    on_error: Callable[[TcpcliError, ExitCode], None] | None = None,
    without_loop: Callable[[], int | None] | None = None,
) -> NoReturn:
    """Run ``main`` on the anyio backend named by TCPCLI_BACKEND (asyncio by default).

    ``without_loop``, when given, is tried first: a run that needs no event loop (a plain
    one-shot connect) ends there, and starting one would cost more than the whole run.
    It returns None, having done nothing, when the run needs the loop after all.
    """
    def call() -> int:
        from tcpcli.cli.collector import resume

        resume()  # start-up is over: collect again (see tcpcli.cli.collector)
        if without_loop is not None:
            code = without_loop()
            if code is not None:
                return code
        import anyio

        return anyio.run(main, backend=env.environ.get("TCPCLI_BACKEND", "asyncio"))

    import signal  # here: a command's --help imports this module and needs none of it

    terminated = False

    def on_sigterm(signum: int, frame: object) -> None:
        nonlocal terminated
        terminated = True
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
            raise Terminated
        # Unwind exactly as Ctrl-C does: each backend's SIGINT handler delivers the
        # KeyboardInterrupt at a safe point. Raising here instead can land inside trio's
        # run loop and leave "Exception ignored in <coroutine ...>" tracebacks behind.
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    code: int
    try:
        code = call()
    except BaseException as exc:
        code = _exit_code(exc, env, traceback=traceback, on_error=on_error)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if terminated and code == ExitCode.INTERRUPTED:
        code = ExitCode.TERMINATED
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
    sys.exit(code)


def _exit_code(
    exc: BaseException,
    env: Environment,
    *,
    traceback: bool,
    on_error: Callable[[TcpcliError, ExitCode], None] | None,
) -> int:
    from tcpcli.core.errors import TcpcliError, translate_dialogue_error

    leaves = [translate_dialogue_error(leaf) for leaf in _leaves(exc)]
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        return ExitCode.INTERRUPTED
    if any(isinstance(leaf, Terminated) for leaf in leaves):
        return ExitCode.TERMINATED
    if any(isinstance(leaf, BrokenPipeError) for leaf in leaves):
        _quiet_broken_pipe()
        return ExitCode.OK
    ours = [leaf for leaf in leaves if isinstance(leaf, TcpcliError)]
    if traceback:
        raise exc
    if ours:
        error = ours[0]
        code = exit_code_for(error.kind)
        if on_error is not None:
            on_error(error, code)
        else:
            env.error(error, code)
        return code
    if isinstance(exc, SystemExit):
        return int(exc.code or 0)
    # Not ours: still one line, with a hint to see more.
    env.unexpected(leaves[0] if leaves else exc)
    return ExitCode.ERROR

