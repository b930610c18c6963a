"""GenerationControl: progress and cancellation shared between a caller and an engine thread."""

from __future__ import annotations

import threading

import pytest

from abstractvision import GenerationCancelledError, GenerationControl, ProgressEvent


def test_report_calls_back_with_events_and_default_messages() -> None:
    events: list[ProgressEvent] = []
    control = GenerationControl(events.append)
    for step in range(1, 4):
        control.report(step, 3)
    assert [(e.step, e.total, e.message) for e in events] == [
        (1, 3, "step 1/3"),
        (2, 3, "step 2/3"),
        (3, 3, "step 3/3"),
    ]
    assert events[-1].fraction == 1.0
    assert control.last_event == events[-1]


def test_a_failing_progress_callback_never_breaks_the_engine() -> None:
    def boom(_event: ProgressEvent) -> None:
        raise RuntimeError("client went away")

    GenerationControl(boom).report(1, 2)


def test_cancel_is_seen_by_check_and_runs_callbacks_once() -> None:
    control = GenerationControl()
    calls: list[str] = []
    unregister = control.on_cancel(lambda: calls.append("a"))
    control.on_cancel(lambda: calls.append("b"))
    unregister()
    control.check()
    control.cancel()
    control.cancel()
    assert control.cancelled and calls == ["b"]
    with pytest.raises(GenerationCancelledError):
        control.check()
    control.on_cancel(lambda: calls.append("late"))  # registered after: runs at once
    assert calls == ["b", "late"]


def test_cancel_from_another_thread_stops_a_step_loop() -> None:
    control = GenerationControl()
    started = threading.Event()
    steps: list[int] = []

    def engine() -> None:
        try:
            for step in range(10_000):
                started.set()
                control.check()
                steps.append(step)
                threading.Event().wait(0.001)
        except GenerationCancelledError:
            steps.append(-1)

    worker = threading.Thread(target=engine)
    worker.start()
    started.wait(5)
    control.cancel()
    worker.join(5)
    assert steps[-1] == -1 and len(steps) < 10_000
