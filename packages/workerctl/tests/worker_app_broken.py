"""A worker app that fails while importing (for the `workerctl worker` error test)."""

raise ZeroDivisionError("broken on import")
