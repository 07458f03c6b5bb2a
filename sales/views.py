"""The server-rendered storefront."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .selectors import sale_list


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "storefront/home.html", {"sales": sale_list()})
