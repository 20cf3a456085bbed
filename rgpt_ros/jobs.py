"""A query job for the worker thread: runs once, can be canceled mid-decode, always finishes.

The executor hands a job to the worker and, for an action goal, waits on ``done``. A cancel
(goal cancel, deactivate, shutdown) sets ``cancelled``; the predictor reads it between decoding
steps through ``should_stop`` and stops, so a canceled job frees the worker within one step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rgpt_model.errors import QueryCancelledError, RGPTError

from .conversions import ConversionError


def describe_error(exc: BaseException) -> str:
    """Readable one-line reason (RGPTError and ConversionError texts already say what to do)."""
    if isinstance(exc, RGPTError | ConversionError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class QueryJob:
    """``run(job)`` on the worker; ``on_done(job)`` after it finished, failed or was refused."""

    def __init__(self, run: Callable[[QueryJob], Any],
                 on_done: Callable[[QueryJob], None] | None = None) -> None:
        self.run = run
        self.on_done = on_done
        self.cancelled = threading.Event()
        self.cancel_reason = "canceled"
        self.done = threading.Event()
        self.result: Any = None
        self.error = ""

    def should_stop(self) -> bool:
        """Polled by the predictor between decoding steps."""
        return self.cancelled.is_set()

    def cancel(self, reason: str = "canceled") -> None:
        """Skip the job if it has not started; stop its decoding if it has."""
        self.cancel_reason = reason
        self.cancelled.set()

    def refuse(self, reason: str) -> None:
        """Finish without running (queue full, node inactive): the error result goes out."""
        self.cancel(reason)
        self()

    def __call__(self) -> None:
        try:
            if self.cancelled.is_set():
                self.error = self.cancel_reason
            else:
                self.result = self.run(self)
        except QueryCancelledError:
            self.result, self.error = None, self.cancel_reason
        except Exception as exc:  # noqa: BLE001 - any failure becomes an error result
            self.result, self.error = None, describe_error(exc)
        finally:
            self.done.set()
            if self.on_done is not None:
                self.on_done(self)
