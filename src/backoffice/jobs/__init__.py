"""Background jobs: slow work accepted with 202 and run by Celery workers."""
