"""The storefront's account pages (the REST API's are in ``accounts.urls``)."""

from django.contrib.auth.views import LogoutView
from django.urls import URLPattern, path

from . import views

urlpatterns: list[URLPattern] = [
    path("login/", views.ShopperLoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
]
