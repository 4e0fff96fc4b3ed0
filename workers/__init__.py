"""Celery workers: the writes behind every accepted job."""
