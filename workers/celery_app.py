"""Builds the Celery app from settings, for the worker and the ingress alike.

Building an app opens no connection; the ingress uses its app only to publish
(by task name), the worker CLI loads `workers.main`.
"""

from __future__ import annotations

from celery import Celery

from celeryconfig import celery_config
from core.settings import Settings, load_settings


def create_celery_app(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    app = Celery("radiantgo", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf.radiantgo_settings = settings
    return app
