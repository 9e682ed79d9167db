"""The Celery app of bench/processes.py (run in its own virtualenv): the same ~1 ms of CPU per task."""

from __future__ import annotations

import os

import redis
from celery import Celery  # type: ignore[import-not-found, unused-ignore]
from cpu_work import burn  # type: ignore[import-not-found, unused-ignore]

URL = os.environ["BENCH_REDIS_URL"]
app = Celery("bench", broker=URL)
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)
_DONE = redis.Redis.from_url(URL)


@app.task(name="work")  # type: ignore[misc, untyped-decorator, unused-ignore]
def work(n: int) -> int:
    result: int = burn(n)
    _DONE.incr("bench:done")
    return result


if __name__ == "__main__":  # the producer: enqueue argv[1] tasks of argv[2] steps each
    import sys

    count, steps = int(sys.argv[1]), int(sys.argv[2])
    for _ in range(count):
        work.delay(steps)
