"""Example application: `celery -A demo_app.celery:app worker`."""
