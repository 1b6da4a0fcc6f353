"""Garbage collection paused while a one-shot run starts.

A run's imports create tens of thousands of objects that live as long as it does (code,
functions, classes); the collections they trigger find nothing to free and cost about a
twentieth of a plain ``connect``'s instructions. The ``tcpcli`` command pauses collection
before importing the CLI (:func:`pause`); :func:`tcpcli.cli.runner.run` resumes it before
the command's work (:func:`resume`), first freezing what start-up made so that later
collections never walk it again. ``--help`` and usage errors end paused. Importing tcpcli
as a library changes nothing: only the command's entry point pauses.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Stop collecting until :func:`resume` (the command's entry point calls this first)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Collect again, as before :func:`pause`; start-up's objects stay out of its way."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
