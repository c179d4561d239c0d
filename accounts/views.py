"""Accepting an invitation: GET/POST /invite/<token>/ (accounts/invites.py has the rules).

Anonymous visitor, new address: a form to set a password; the account is created,
logged in, and lands on the organisation's wall. Anonymous visitor whose address
has an account: asked to log in, then back here. Logged-in visitor: one button to
join with the current account. A used, expired, replaced or unknown link: one page
that says so (HTTP 410), the same for all four.
"""
from __future__ import annotations

from django import forms
from django.contrib.auth import login, password_validation
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from accounts import invites
from accounts.middleware import SESSION_KEY

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


class SetPasswordForm(forms.Form):
    password1 = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput(
        attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(label="Password again", strip=False, widget=forms.PasswordInput(
        attrs={"autocomplete": "new-password"}))

    def __init__(self, email: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self):
        cleaned = super().clean()
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first and second and first != second:
            raise forms.ValidationError("The two passwords differ.")
        if first:
            from django.contrib.auth import get_user_model

            password_validation.validate_password(first, get_user_model()(username=self.email, email=self.email))
        return cleaned


def _closed(request):
    return render(request, "accounts/invite_closed.html", status=410)


def _land(request, invitation):
    request.session[SESSION_KEY] = str(invitation.organisation_id)
    return HttpResponseRedirect(reverse("frontend:wall"))


@never_cache
@sensitive_post_parameters("password1", "password2")
def accept_invitation(request, token: str):
    try:
        invitation = invites.find(token)
    except invites.InvitationClosed:
        return _closed(request)
    context = {"invitation": invitation}
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                invites.accept_as(invitation, request.user)
            except invites.InvitationClosed:
                return _closed(request)
            return _land(request, invitation)
        return render(request, "accounts/invite_join.html", context)
    if invites.existing_account(invitation.email) is not None:
        login_url = f"{reverse('frontend:login')}?{urlencode({'next': request.path})}"
        return render(request, "accounts/invite_login.html", {**context, "login_url": login_url})
    form = SetPasswordForm(invitation.email, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            user = invites.accept_new(invitation, form.cleaned_data["password1"])
        except invites.InvitationClosed:
            return _closed(request)
        except invites.AccountExists:
            return HttpResponseRedirect(request.path)
        login(request, user, backend=MODEL_BACKEND)
        return _land(request, invitation)
    return render(request, "accounts/invite_set_password.html", {**context, "form": form},
                  status=400 if request.method == "POST" else 200)
