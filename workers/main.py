"""Entry point for the Celery CLI: `celery -A workers.main worker|beat`.

Only the worker and beat processes import this module; creating the app here
opens no connection, and MongoDB/Redis clients are made per worker process
(workers.runtime), after any fork.
"""

from __future__ import annotations

from celeryconfig import create_celery_app
from workers import runtime

app = create_celery_app()
runtime.install(app)
app.autodiscover_tasks(["workers"], related_name="tasks", force=True)
