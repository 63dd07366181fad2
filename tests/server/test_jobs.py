"""The queue: one worker, in order, bounded; progress and interrupt."""

import threading

import pytest

from gouache.server.jobs import Interrupted, JobQueue, QueueFull


@pytest.fixture
def queue():
    q = JobQueue(size=2)
    q.start()
    yield q
    q.stop()


def test_jobs_run_one_at_a_time_in_order(queue):
    order = []
    futures = [queue.submit("job", lambda t, i=i: order.append(i) or i) for i in range(2)]
    assert [f.result(5) for f in futures] == [0, 1] and order == [0, 1]


def test_a_full_queue_refuses_with_a_message(queue):
    release = threading.Event()
    running = threading.Event()
    first = queue.submit("block", lambda t: running.set() or release.wait(5))
    running.wait(5)
    waiting = [queue.submit("wait", lambda t: None) for _ in range(2)]
    with pytest.raises(QueueFull, match="queue is full"):
        queue.submit("one too many", lambda t: None)
    release.set()
    assert first.result(5) and [f.result(5) for f in waiting] == [None, None]


def test_a_failing_job_leaves_the_worker_running(queue):
    def boom(tracker):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        queue.submit("bad", boom).result(5)
    assert queue.submit("good", lambda t: 42).result(5) == 42


def test_progress_and_interrupt_between_steps(queue):
    at_step = threading.Event()
    go_on = threading.Event()
    steps = []

    def job(tracker):
        for i in range(1, 11):
            tracker.progress(i, 10)
            steps.append(i)
            if i == 3:
                at_step.set()
                go_on.wait(5)
        return "finished"

    future = queue.submit("txt2img", job)
    at_step.wait(5)
    state = queue.state()
    assert state["state"]["job"] == "txt2img" and state["state"]["sampling_step"] == 3
    assert state["progress"] == pytest.approx(0.31) and state["eta_relative"] >= 0
    queue.interrupt()
    go_on.set()
    with pytest.raises(Interrupted):
        future.result(5)
    assert steps == [1, 2, 3]
    assert queue.state()["progress"] == 0.0
