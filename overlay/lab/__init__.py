"""Real node processes on 127.0.0.1 for tests, benchmarks and demos: ``localnet`` (start, wait,
stop) and ``demo`` (`make demo`)."""
