"""Login limits (django-axes): who the client is, and what a locked-out person sees.

Axes counts failed logins per account and per address (settings.AXES_*, see
docs/deployment.md). The address is REMOTE_ADDR only: the ASGI server already
replaced it with the X-Forwarded-For client for TRUSTED_PROXIES peers, and a
header anyone can send must never choose whose counter a failure lands on.
"""
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render

LOCKED_OUT_STATUS = 429


def client_address(request) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: the peer address as the ASGI server reported it."""
    return request.META.get("REMOTE_ADDR")


def lockout_minutes() -> int:
    cool_off = settings.AXES_COOLOFF_TIME
    return max(1, round(cool_off.total_seconds() / 60)) if cool_off else 0


def locked_out(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the login page again, saying why and for how long (HTTP 429)."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    form = AuthenticationForm(request, initial={"username": username})
    return render(request, "frontend/login.html", {
        "form": form,
        "locked_out": True,
        "lockout_minutes": lockout_minutes(),
        "next": request.POST.get("next") or request.GET.get("next", ""),
    }, status=LOCKED_OUT_STATUS)
