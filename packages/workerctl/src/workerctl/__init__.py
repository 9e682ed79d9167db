"""workerctl."""
