"""``workerctl worker APP``: run a worker node."""
