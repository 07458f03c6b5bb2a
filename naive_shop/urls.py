"""Mounted under ``/bench/`` only when ``FLASHSALE_BENCH_ENDPOINTS`` is on (``flashsale_project/urls.py``)."""

from django.urls import path

from . import views

urlpatterns = [
    path("control/", views.control, name="bench-control"),
    path("naive/<int:stock_id>/purchase/", views.purchase, name="bench-naive-purchase"),
]
