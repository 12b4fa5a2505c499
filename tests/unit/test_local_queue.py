"""The local backend's run queue: each job runs once, and no more workers than slots hold one."""
import os
import threading
import time

from retrainer.adapters.local_queue import RunQueue


def test_jobs_come_out_once_oldest_first(tmp_path):
    queue = RunQueue(tmp_path, slots=2)
    for run_id in ("a", "b", "c"):
        queue.put(run_id, {"run_id": run_id})
    assert queue.take()["run_id"] == "a", "oldest first"
    queue.done("a")
    for run_id in ("d", "e"):
        queue.put(run_id, {"run_id": run_id})

    taken = []
    lock = threading.Lock()

    def drain():
        while (job := queue.take()) is not None:
            with lock:
                taken.append(job["run_id"])
            queue.done(job["run_id"])

    workers = [threading.Thread(target=drain) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(taken) == ["b", "c", "d", "e"]
    assert not queue.pending() and queue.take() is None
    assert not list((tmp_path / "queue" / "taken").iterdir()), "done() clears what was taken"


def test_no_more_slot_holders_than_slots(tmp_path):
    queue = RunQueue(tmp_path, slots=2)
    with queue.slot() as first, queue.slot() as second:
        with queue.slot() as third:
            assert (first, second, third) == (True, True, False)
    with queue.slot() as again:
        assert again, "a released slot is free again"


def test_a_job_is_alive_while_waiting_or_while_its_worker_renews_its_lease(tmp_path):
    queue = RunQueue(tmp_path, slots=1, lease_seconds=60)
    queue.put("r1", {"run_id": "r1"})
    assert queue.has("r1")
    queue.take()
    assert queue.has("r1"), "taken, its lease just started"
    [taken] = (tmp_path / "queue" / "taken").glob("*-r1.json")

    old = time.time() - 61
    os.utime(taken, (old, old))      # a worker that died (or hangs): nobody renewed the lease
    assert not queue.has("r1")
    assert not queue.has("never-queued")


def test_a_worker_holding_the_lease_keeps_it_past_the_lease_time(tmp_path):
    queue = RunQueue(tmp_path, slots=1, lease_seconds=0.4)
    queue.put("r1", {"run_id": "r1"})
    queue.take()
    with queue.lease("r1"):
        time.sleep(1.0)
        assert queue.has("r1")
    queue.done("r1")
    assert not queue.has("r1")


def test_waiting_jobs_are_stranded_only_while_a_slot_is_free(tmp_path):
    queue = RunQueue(tmp_path, slots=1)
    assert not queue.stranded(), "nothing waits"
    queue.put("r1", {"run_id": "r1"})
    assert queue.stranded(), "a job waits and no worker holds the slot (the one that would drain it died)"
    with queue.slot():
        assert not queue.stranded(), "the slot holder will drain it"
