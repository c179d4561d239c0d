"""Members in the portal: owners invite by email, change roles and remove members; the invitation
link sets a password once and then is dead. alice owns Acme, bob operates, carol views, mallory
owns Globex (the outsider)."""
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save
from django.urls import reverse
from django.utils import timezone

from accounts import invites
from accounts.members import leaves_no_owner
from accounts.models import Invitation, Membership, Role

LINK = re.compile(r"https?://\S+/invite/[A-Za-z0-9_-]+/")


@pytest.fixture
def login(client):
    def as_(user):
        client.force_login(user)
        return client
    return as_


def _invite(client, email, role="viewer"):
    return client.post(reverse("frontend:invite-member"), {"email": email, "role": role}, follow=True)


def _link(mail) -> str:
    return LINK.search(mail.body).group(0)


def _path(link: str) -> str:
    return "/" + link.split("/", 3)[3]


# -- inviting ------------------------------------------------------------------------------------
def test_an_owner_invites_by_email_and_the_link_sets_a_password_once(login, client, acme, alice, mailoutbox):
    response = _invite(login(alice), "dora@example.org", "operator")
    assert response.status_code == 200 and "Invitation sent to dora@example.org" in response.content.decode()
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["dora@example.org"] and "Acme" in mailoutbox[0].subject
    path = _path(_link(mailoutbox[0]))
    stored = Invitation.objects.get()
    assert path.split("/")[2] not in stored.token_digest  # only a digest is kept
    client.logout()
    page = client.get(path)
    assert page.status_code == 200 and 'name="password1"' in page.content.decode()
    assert "no-cache" in page["Cache-Control"] or "no-store" in page["Cache-Control"]
    done = client.post(path, {"password1": "a long new password", "password2": "a long new password"})
    assert done.status_code == 302 and done["Location"] == reverse("frontend:wall")
    dora = get_user_model().objects.get(email="dora@example.org")
    assert Membership.objects.get(user=dora).role == Role.OPERATOR and Membership.objects.get(user=dora).organisation == acme
    assert client.get(reverse("frontend:wall")).status_code == 200  # logged in, in the portal
    assert dora.check_password("a long new password")  # (client.login has no request for django-axes)
    client.logout()
    again = client.post(path, {"password1": "another password 2", "password2": "another password 2"})
    assert again.status_code == 410 and "does not work" in again.content.decode()
    assert client.get(path).status_code == 410
    dora.refresh_from_db()
    assert not dora.check_password("another password 2") and dora.check_password("a long new password")


def test_an_expired_link_is_refused(login, client, alice, mailoutbox):
    _invite(login(alice), "late@example.org")
    path = _path(_link(mailoutbox[0]))
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    client.logout()
    assert client.get(path).status_code == 410
    response = client.post(path, {"password1": "a long new password", "password2": "a long new password"})
    assert response.status_code == 410
    assert not get_user_model().objects.filter(email="late@example.org").exists()


def test_an_unknown_link_and_a_replaced_link_get_the_same_refusal(login, client, alice, mailoutbox):
    owner = login(alice)
    _invite(owner, "twice@example.org")
    _invite(owner, "twice@example.org")
    first, second = (_path(_link(m)) for m in mailoutbox)
    client.logout()
    unknown = client.get("/invite/not-a-real-token/")
    replaced = client.get(first)
    assert unknown.status_code == replaced.status_code == 410
    assert unknown.content == replaced.content
    assert client.get(second).status_code == 200


def test_the_invite_answer_is_the_same_for_an_address_with_an_account_elsewhere(
    login, alice, mallory, mailoutbox
):
    mallory.email = "mallory@globex.example"
    mallory.save()
    owner = login(alice)
    known = _invite(owner, "mallory@globex.example")
    unknown = _invite(owner, "nobody@globex.example")
    said = lambda r: re.search(r'<ul class="messages".*?</ul>', r.content.decode(), re.S).group(0)  # noqa: E731
    assert known.status_code == unknown.status_code == 200 and known.redirect_chain == unknown.redirect_chain
    assert said(known).replace("mallory@", "nobody@") == said(unknown)
    listed = lambda r, email: re.search(rf'<tr data-invitation="{email}">.*?</tr>', r.content.decode(), re.S)  # noqa: E731
    assert listed(unknown, "mallory@globex.example") and listed(unknown, "nobody@globex.example")
    assert len(mailoutbox) == 2
    assert not Membership.objects.filter(user=mallory, organisation__slug="acme").exists()


def test_an_invited_person_with_an_account_joins_after_logging_in(login, client, acme, alice, mallory, mailoutbox):
    mallory.email = "mallory@globex.example"
    mallory.save()
    _invite(login(alice), "Mallory@Globex.example", "viewer")
    path = _path(_link(mailoutbox[0]))
    client.logout()
    asked = client.get(path).content.decode()
    assert "Log in to accept" in asked and 'name="password1"' not in asked
    assert client.post(path, {"password1": "x" * 12, "password2": "x" * 12}).status_code == 200  # no new account
    assert get_user_model().objects.filter(email__iexact="mallory@globex.example").count() == 1
    client.force_login(mallory)
    assert "Join Acme" in client.get(path).content.decode()
    response = client.post(path)
    assert response.status_code == 302
    assert Membership.objects.get(user=mallory, organisation=acme).role == Role.VIEWER
    assert client.post(path).status_code == 410


def test_an_email_that_cannot_be_sent_leaves_no_working_invitation(login, alice, settings):
    settings.EMAIL_BACKEND = "tests.test_members.FailingBackend"
    response = _invite(login(alice), "dora@example.org")
    assert "could not be sent" in response.content.decode()
    assert not Invitation.objects.exists()


class FailingBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise OSError("SMTP server unreachable")


def test_invitation_states_follow_acceptance_revocation_and_expiry():
    now = timezone.now()
    make = lambda **kw: Invitation(expires_at=now + timedelta(hours=1), **kw)  # noqa: E731
    assert invites.state_of(make(), now) == invites.OPEN
    assert invites.state_of(make(), now + timedelta(hours=1)) == invites.EXPIRED
    assert invites.state_of(make(accepted_at=now), now) == invites.ACCEPTED
    assert invites.state_of(make(revoked_at=now), now) == invites.REVOKED


# -- who may manage members ----------------------------------------------------------------------
def test_operators_and_viewers_get_403_on_the_members_page_and_its_actions(login, personas):
    bobs = Membership.objects.get(user=personas["operator"])
    for persona in ("operator", "viewer"):
        client = login(personas[persona])
        assert client.get(reverse("frontend:members")).status_code == 403
        assert client.post(reverse("frontend:invite-member"), {"email": "x@example.org", "role": "owner"}).status_code == 403
        assert client.post(reverse("frontend:member-role", args=[bobs.pk]), {"role": "owner"}).status_code == 403
        assert client.post(reverse("frontend:member-remove", args=[bobs.pk])).status_code == 403
    assert not Invitation.objects.exists()
    bobs.refresh_from_db()
    assert bobs.role == Role.OPERATOR


def test_the_outsider_gets_404_for_acme_members_and_never_sees_them(login, personas, mailoutbox):
    alices = Membership.objects.get(user=personas["owner"])
    client = login(personas["outsider"])
    page = client.get(reverse("frontend:members")).content.decode()
    assert "mallory" in page and "alice" not in page and "bob" not in page
    assert client.post(reverse("frontend:member-role", args=[alices.pk]), {"role": "viewer"}).status_code == 404
    assert client.post(reverse("frontend:member-remove", args=[alices.pk])).status_code == 404
    invitation = invites.invite(organisation=alices.organisation, email="a@example.org", role="viewer",
                                invited_by=personas["owner"], link_for=lambda token: token)
    assert client.post(reverse("frontend:invitation-revoke", args=[invitation.pk])).status_code == 404
    assert Membership.objects.get(pk=alices.pk).role == Role.OWNER
    assert invites.state_of(Invitation.objects.get(pk=invitation.pk), timezone.now()) == invites.OPEN


# -- roles and removal ---------------------------------------------------------------------------
def test_an_owner_changes_a_role_through_save_so_signals_fire(login, alice, bob):
    saved = []
    receiver = lambda sender, instance, **kw: saved.append((instance.user.username, instance.role))  # noqa: E731
    post_save.connect(receiver, sender=Membership, weak=False)
    try:
        bobs = Membership.objects.get(user=bob)
        response = login(alice).post(reverse("frontend:member-role", args=[bobs.pk]), {"role": "viewer"}, follow=True)
    finally:
        post_save.disconnect(receiver, sender=Membership)
    assert "bob is now viewer" in response.content.decode()
    assert Membership.objects.get(user=bob).role == Role.VIEWER and saved == [("bob", "viewer")]


def test_an_owner_removes_a_member_through_delete_so_signals_fire(login, alice, bob, carol):
    deleted = []
    receiver = lambda sender, instance, **kw: deleted.append(instance.user.username)  # noqa: E731
    post_delete.connect(receiver, sender=Membership, weak=False)
    try:
        bobs = Membership.objects.get(user=bob)
        response = login(alice).post(reverse("frontend:member-remove", args=[bobs.pk]))
    finally:
        post_delete.disconnect(receiver, sender=Membership)
    assert response.status_code == 302 and deleted == ["bob"]
    assert not Membership.objects.filter(user=bob).exists() and Membership.objects.filter(user=carol).exists()


def test_the_last_owner_is_never_demoted_or_removed(login, acme, alice, bob):
    client = login(alice)
    alices = Membership.objects.get(user=alice)
    response = client.post(reverse("frontend:member-role", args=[alices.pk]), {"role": "viewer"}, follow=True)
    assert "at least one owner" in response.content.decode()
    response = client.post(reverse("frontend:member-remove", args=[alices.pk]), follow=True)
    assert "at least one owner" in response.content.decode()
    assert Membership.objects.get(user=alice).role == Role.OWNER
    bobs = Membership.objects.get(user=bob)
    client.post(reverse("frontend:member-role", args=[bobs.pk]), {"role": "owner"})
    client.post(reverse("frontend:member-remove", args=[alices.pk]))
    assert not Membership.objects.filter(user=alice).exists()
    assert list(acme.memberships.values_list("role", flat=True)) == [Role.OWNER]


def test_the_no_owner_rule():
    assert leaves_no_owner(Role.OWNER, Role.VIEWER, other_owners=0)
    assert leaves_no_owner(Role.OWNER, None, other_owners=0)
    assert not leaves_no_owner(Role.OWNER, None, other_owners=1)
    assert not leaves_no_owner(Role.OWNER, Role.OWNER, other_owners=0)
    assert not leaves_no_owner(Role.OPERATOR, None, other_owners=0)
