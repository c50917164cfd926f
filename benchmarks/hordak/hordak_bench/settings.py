"""A minimal Django project whose only job is django-hordak ``transfer_to`` over HTTP.

The database is the benchmark's PostgreSQL cluster (unix socket), given by ``run.py`` in
``BENCH_PG_*`` variables. DEBUG off (it would keep every query in memory), no middleware,
persistent connections.
"""

import os

SECRET_KEY = "benchmark-only-not-a-secret"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "hordak_bench.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "mptt", "djmoney", "hordak", "hordak_bench"]
MIDDLEWARE: list[str] = []
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_PG_DB", "hordak"),
        "USER": os.environ.get("BENCH_PG_USER", "postgres"),
        "HOST": os.environ.get("BENCH_PG_HOST", ""),
        "PORT": os.environ.get("BENCH_PG_PORT", ""),
        "CONN_MAX_AGE": None,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
HORDAK_INTERNAL_CURRENCY = "EUR"
DEFAULT_CURRENCY = "EUR"
CURRENCIES = ["EUR"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"handlers": [], "level": "WARNING"},
}
