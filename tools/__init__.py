"""Developer tooling: bring the stack up, run it, check it."""
