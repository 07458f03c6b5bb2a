"""The storefront's login, logout and sign-up pages (Django's auth views), and the admin's
login behind the same throttles (``accounts.throttles``).

Logging in (or signing up) caches the session hash the purchase path checks, so a
shopper's first purchase makes no SQL query (``accounts.selectors.user_id_for_session``).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
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

from core.client_address import client_ip
from core.throttle import TooManyAttempts

from .forms import SignUpForm
from .services import user_register, user_session_warm
from .throttles import login_attempt_begin, login_attempt_failed, registration_attempt


def _too_many(error: TooManyAttempts) -> HttpResponse:
    response = HttpResponse(error.detail, status=error.http_status, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = error.headers["Retry-After"]
    return response


class ShopperLoginView(LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        try:
            login_attempt_begin(client_ip=client_ip(request), username=request.POST.get("username", ""))
        except TooManyAttempts as error:
            form = self.get_form()
            form.add_error(None, error.detail)
            response = self.render_to_response(self.get_context_data(form=form), status=error.http_status)
            response["Retry-After"] = error.headers["Retry-After"]
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_valid(form)
        user_session_warm(user=form.get_user())
        return response

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        login_attempt_failed(client_ip=client_ip(self.request), username=self.request.POST.get("username", ""))
        return super().form_invalid(form)


@sensitive_post_parameters("password")
@never_cache
def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's login page (routed before ``admin.site.urls``) behind the login throttles."""
    if request.method != "POST":
        return admin.site.login(request)
    username = request.POST.get("username", "")
    try:
        login_attempt_begin(client_ip=client_ip(request), username=username)
    except TooManyAttempts as error:
        return _too_many(error)
    response = admin.site.login(request)
    if not request.user.is_authenticated:
        login_attempt_failed(client_ip=client_ip(request), username=username)
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
    if request.method == "POST":
        try:
            registration_attempt(client_ip=client_ip(request), username=request.POST.get("username"))
        except TooManyAttempts as error:
            return _too_many(error)
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
