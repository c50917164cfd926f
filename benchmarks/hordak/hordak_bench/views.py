"""One view: ``transfer_to`` between the two accounts named in the body.

hordak's ORM calls are synchronous. Django would run a sync view under ASGI on a single
thread per process (``thread_sensitive``), which would cap hordak at one transaction per
worker; so the view is async and runs the transfer in the thread pool
(``thread_sensitive=False``), each thread with its own persistent connection. That is the
fairest way to serve hordak with the same uvicorn workers as the product.
"""

import json

from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from djmoney.money import Money
from hordak.models import Account


def _transfer(src: int, dst: int, amount: int) -> str:
    with transaction.atomic():
        a = Account.objects.get(pk=src)
        b = Account.objects.get(pk=dst)
        tx = a.transfer_to(b, Money(amount, "EUR"), description="benchmark transfer")
    return str(tx.uuid)


async def transfer(request):
    if request.method != "POST":
        return HttpResponse(status=405)
    body = json.loads(request.body)
    tx = await sync_to_async(_transfer, thread_sensitive=False)(
        int(body["from"]), int(body["to"]), int(body["amount"])
    )
    return JsonResponse({"transaction": tx}, status=201)


async def health(request):
    return JsonResponse({"status": "ok"})
