"""worker-core: prioritized, concurrent task running for asyncio."""
