"""RadiantGo's domain and infrastructure, free of Flask and Celery."""
