"""ASGI entry point, served by benchmarks/serve.py with the product's uvicorn settings."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hordak_bench.settings")


def create_app():  # a factory, like timebank.app:create_app
    return get_asgi_application()
