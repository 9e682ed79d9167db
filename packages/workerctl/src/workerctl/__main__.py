def main() -> None:  # pragma: no cover - replaced by the workerctl issue
    """Entry point."""
