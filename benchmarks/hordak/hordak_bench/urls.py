from django.urls import path

from hordak_bench.views import health, transfer

urlpatterns = [path("transfer", transfer), path("health", health)]
