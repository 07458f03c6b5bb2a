"""The storefront's login, logout and sign-up pages (Django's auth views).

Logging in (or signing up) caches the session hash the purchase path checks, so a
shopper's first purchase makes no SQL query (``accounts.selectors.user_id_for_session``).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from .forms import SignUpForm
from .services import user_register, user_session_warm


class ShopperLoginView(LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_valid(form)
        user_session_warm(user=form.get_user())
        return response


def _next_url(request: HttpRequest) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return resolve_url(settings.LOGIN_REDIRECT_URL)


@sensitive_post_parameters("password1", "password2")
@csrf_protect
@never_cache
def signup(request: HttpRequest) -> HttpResponse:
    """Create a shopper (``user_register``), log them in, and send them where they were going."""
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = user_register(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
                email=form.cleaned_data["email"],
            )
        except IntegrityError:  # Lost a race with another sign-up for the same name.
            form.add_error("username", "That username is taken.")
        else:
            user = get_user_model().objects.get(pk=issued.user_id)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            user_session_warm(user=user)
            return HttpResponseRedirect(_next_url(request))
    return render(request, "accounts/signup.html", {"form": form, "next": _next_url(request)})
