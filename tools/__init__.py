"""Developer tooling: bring the stack up, run it, check it."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository
