"""worker-redis."""
