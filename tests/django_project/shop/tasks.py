"""The shop's tasks: found by redisq.contrib.django's autodiscovery, never imported by hand
in the worker."""

from __future__ import annotations

from redisq.contrib.django import app

from .models import Order


@app.task(retries=0)
def ship_order(order_id: int) -> str:
    """Fails (Order.DoesNotExist) when the row is not there: what a job queued for a rolled
    back or not yet committed row meets."""
    order = Order.objects.get(pk=order_id)
    order.shipped = True
    order.save(update_fields=["shipped"])
    return order.item
