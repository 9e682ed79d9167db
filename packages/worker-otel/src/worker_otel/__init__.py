"""worker-otel."""
