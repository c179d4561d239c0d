"""The admin as the people who use it: alice owns Acme, mallory owns Globex (the outsider),
carol views Acme. Staff who are not superusers see only their own organisations' rows."""
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Organisation
from recordings.models import Segment
from sightline_agent import tokens
from streams import control
from streams.admin import TokenInlineForm
from streams.models import AuthResult, Device, DeviceToken, authenticate_token

TOKEN_IN_PAGE = re.compile(r"sl_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}")


def _staff(*users):
    for user in users:
        user.is_staff = True
        user.save(update_fields=["is_staff"])


@pytest.fixture
def as_alice(client, alice, mallory):
    _staff(alice, mallory)
    client.force_login(alice)
    return client


@pytest.fixture
def as_mallory(client, alice, mallory):
    _staff(alice, mallory)
    client.force_login(mallory)
    return client


@pytest.fixture
def disconnects(monkeypatch):
    calls = []
    monkeypatch.setattr(control, "disconnect_device", lambda device_id, reason, token_id=None: calls.append((device_id, reason)))
    return calls


@pytest.fixture
def acme_segment(acme_camera):
    now = timezone.now()
    return Segment.objects.create(device=acme_camera, start=now, end=now, codec="jpeg", storage_key="acme/secret-key.mp4")


def _action(client, model, action, *pks):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return client.post(url, {"action": action, "_selected_action": [str(pk) for pk in pks]})


def _device_form(device, **changes):
    data = {
        "organisation": str(device.organisation_id),
        "name": device.name,
        "description": device.description,
        "location": device.location,
        "expected_media": device.expected_media,
        "recording_policy": device.recording_policy,
        "retention_days": device.retention_days,
        "brightness": device.brightness,
        "contrast": device.contrast,
        "fps": device.fps,
        "width": device.width,
        "height": device.height,
        "extra_settings": "{}",
    }
    if device.enabled:
        data["enabled"] = "on"
    rows = list(device.tokens.all()) if device.pk else []
    data.update({
        "tokens-TOTAL_FORMS": len(rows),
        "tokens-INITIAL_FORMS": len(rows),
        "tokens-MIN_NUM_FORMS": 0,
        "tokens-MAX_NUM_FORMS": 1000,
    })
    for index, row in enumerate(rows):
        data.update({f"tokens-{index}-id": row.pk, f"tokens-{index}-device": str(device.pk), f"tokens-{index}-label": row.label})
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


# -- what each owner sees -------------------------------------------------------------------
def test_the_owner_sees_her_devices_with_online_state_and_filters(as_alice, acme_camera, globex_camera):
    page = as_alice.get(reverse("admin:streams_device_changelist")).content.decode()
    assert "Front door" in page and "Loading bay" not in page
    assert "active tokens" in page.lower() and "last seen" in page.lower()
    assert "Globex" not in page  # not even in the organisation filter


def test_the_outsider_never_sees_acme_devices_in_the_changelist_or_filters(as_mallory, acme_camera, globex_camera):
    for query in ("", "?q=Front", f"?organisation={acme_camera.organisation_id}"):
        page = as_mallory.get(reverse("admin:streams_device_changelist") + query).content.decode()
        assert "Front door" not in page and "Acme" not in page


def test_the_outsider_cannot_open_change_or_delete_or_history_of_an_acme_device(as_mallory, acme_camera):
    for view in ("change", "delete", "history"):
        response = as_mallory.get(reverse(f"admin:streams_device_{view}", args=[acme_camera.pk]), follow=True)
        assert "Front door" not in response.content.decode(), view
        assert response.status_code == 404 or response.redirect_chain[0] == (reverse("admin:index"), 302), view


def test_the_outsider_cannot_change_an_acme_device_by_posting(as_mallory, acme_camera):
    as_mallory.post(reverse("admin:streams_device_change", args=[acme_camera.pk]), _device_form(acme_camera, name="pwned"))
    acme_camera.refresh_from_db()
    assert acme_camera.name == "Front door"


def test_the_outsider_never_sees_acme_segments(as_mallory, acme_segment):
    page = as_mallory.get(reverse("admin:recordings_segment_changelist")).content.decode()
    assert "Front door" not in page and "0 segments" in page
    response = as_mallory.get(reverse("admin:recordings_segment_change", args=[acme_segment.pk]), follow=True)
    assert "secret-key" not in response.content.decode()


def test_the_owner_sees_her_segments_read_only(as_alice, acme_segment):
    assert "Front door" in as_alice.get(reverse("admin:recordings_segment_changelist")).content.decode()
    page = as_alice.get(reverse("admin:recordings_segment_change", args=[acme_segment.pk])).content.decode()
    assert "secret-key" in page and 'name="_save"' not in page


def test_the_outsider_sees_only_his_organisation_and_members(as_mallory, acme, globex, alice):
    page = as_mallory.get(reverse("admin:accounts_organisation_changelist")).content.decode()
    assert "Globex" in page and "Acme" not in page
    response = as_mallory.get(reverse("admin:accounts_organisation_change", args=[acme.pk]), follow=True)
    assert "alice" not in response.content.decode()
    page = as_mallory.get(reverse("admin:accounts_membership_changelist")).content.decode()
    assert "mallory" in page and "alice" not in page


def test_the_outsider_never_sees_acme_tokens(as_mallory, acme_camera):
    _, row = acme_camera.issue_token(label="acme-label")
    page = as_mallory.get(reverse("admin:streams_devicetoken_changelist")).content.decode()
    assert "acme-label" not in page and row.prefix not in page


def test_the_outsider_can_pick_only_his_own_organisation_for_a_new_device(as_mallory, acme, globex):
    page = as_mallory.get(reverse("admin:streams_device_add")).content.decode()
    assert str(globex.pk) in page and str(acme.pk) not in page
    device = Device(organisation=acme, name="Planted")
    response = as_mallory.post(reverse("admin:streams_device_add"), _device_form(device))
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Device.objects.filter(name="Planted").exists()


def test_the_outsider_cannot_act_on_acme_devices(as_mallory, acme_camera, disconnects):
    _action(as_mallory, Device, "disable_devices", acme_camera.pk)
    _action(as_mallory, Device, "issue_token", acme_camera.pk)
    acme_camera.refresh_from_db()
    assert acme_camera.enabled and not acme_camera.tokens.exists() and disconnects == []


# -- tokens: shown once, rotated, revoked -----------------------------------------------------
def test_creating_a_device_shows_its_token_once_and_stores_only_a_hash(as_alice, acme, django_capture_on_commit_callbacks):
    response = as_alice.post(reverse("admin:streams_device_add"), _device_form(Device(organisation=acme, name="Back gate")))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    shown = TOKEN_IN_PAGE.findall(response.content.decode())
    assert len(shown) == 1
    device = Device.objects.get(name="Back gate")
    row = device.tokens.get()
    assert row.digest == tokens.digest(shown[0]) and shown[0] not in row.digest
    assert all(shown[0] not in morsel.value for morsel in response.cookies.values())
    assert authenticate_token(shown[0])[0] == AuthResult.OK
    later = as_alice.get(reverse("admin:streams_device_change", args=[device.pk])).content.decode()
    assert shown[0] not in later and row.digest not in later and str(row) in later


def test_the_token_page_shows_the_portals_real_device_url_copy_and_download(as_alice, acme, settings):
    settings.ALLOWED_HOSTS = ["cams.example.org", "testserver"]
    for secure, host, expected in [(True, "cams.example.org:8443", "wss://cams.example.org:8443/ws/device/"),
                                   (False, "testserver", "ws://testserver/ws/device/")]:
        device = Device(organisation=acme, name=f"Gate {host}")
        response = as_alice.post(reverse("admin:streams_device_add"), _device_form(device), secure=secure,
                                 HTTP_HOST=host)
        page = response.content.decode()
        assert response.status_code == 200
        assert "YOUR-HOST" not in page
        assert f'<code id="device-url">{expected}</code>' in page
        assert f"--url {expected} --token-file" in page
        assert 'data-copy="token-1"' in page and 'data-download="token-1"' in page
        assert "js/token_page.js" in page
        # No inline script or handler (the Content-Security-Policy forbids them).
        assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", page))
        assert not re.search(r"\son(click|load|submit)=", page)
        token = TOKEN_IN_PAGE.findall(page)[0]
        assert token not in "".join(re.findall(r'(?:href|src|action)="([^"]*)"', page))  # never in a URL


def test_the_token_page_shows_how_to_connect_a_camera_with_the_real_url_and_the_token_file_never_the_token(
        as_alice, acme, settings, tmp_path):
    import html

    from sightline_agent.bridge import parse_config
    from streams.admin import token_file_name

    settings.ALLOWED_HOSTS = ["cams.example.org"]
    response = as_alice.post(reverse("admin:streams_device_add"),
                             _device_form(Device(organisation=acme, name='Gate "north"')), secure=True,
                             HTTP_HOST="cams.example.org")
    page = response.content.decode()
    token = TOKEN_IN_PAGE.findall(page)[0]
    device = Device.objects.get(name='Gate "north"')
    filename = token_file_name(device)
    snippets = {name: html.unescape(re.search(rf'<code id="{name}">(.*?)</code>', page, re.S).group(1))
                for name in ("command-1", "bridge-config", "systemd-unit", "container-command")}
    assert snippets["command-1"] == \
        f"sightline-agent --url wss://cams.example.org/ws/device/ --token-file {filename}"
    (camera,), _ = parse_config(snippets["bridge-config"], tmp_path)  # a valid bridge file as it stands
    assert camera.name == 'Gate "north"' and camera.sightline_url == "wss://cams.example.org/ws/device/"
    assert str(camera.token_file) == f"/etc/sightline/{filename}" and camera.url.startswith("rtsp://")
    assert "ExecStart=/opt/sightline/.venv/bin/sightline-agent bridge --config /etc/sightline/bridge.toml" \
        in snippets["systemd-unit"]
    assert "-v /etc/sightline:/etc/sightline:ro" in snippets["container-command"]
    assert "sightline-agent bridge --config /etc/sightline/bridge.toml" in snippets["container-command"]
    for name, text in snippets.items():
        assert token not in text, name
        assert f'data-copy="{name}"' in page
    assert page.count(token) == 1  # only in the token's own cell


def test_deleting_a_device_in_the_admin_goes_to_the_portals_choice(as_alice, acme_camera, acme_segment):
    response = as_alice.get(reverse("admin:streams_device_delete", args=[acme_camera.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("frontend:device-remove", args=[acme_camera.pk])
    assert Device.objects.filter(pk=acme_camera.pk).exists()


def test_rotating_keeps_the_two_newest_tokens_active(as_alice, acme_camera):
    shown = []
    for _ in range(3):
        response = _action(as_alice, Device, "issue_token", acme_camera.pk)
        assert response.status_code == 200 and "no-store" in response["Cache-Control"]
        shown += TOKEN_IN_PAGE.findall(response.content.decode())
    assert len(set(shown)) == 3
    assert [authenticate_token(token)[0] for token in shown] == [AuthResult.REVOKED, AuthResult.OK, AuthResult.OK]
    assert acme_camera.tokens.filter(revoked_at__isnull=True).count() == 2


def test_revoking_a_token_in_the_token_list_disconnects_the_device(
    as_alice, acme_camera, disconnects, django_capture_on_commit_callbacks
):
    clear, row = acme_camera.issue_token()
    with django_capture_on_commit_callbacks(execute=True):
        _action(as_alice, DeviceToken, "revoke_tokens", row.pk)
    assert authenticate_token(clear)[0] == AuthResult.REVOKED
    assert disconnects == [(acme_camera.pk, "token_revoked")]


def test_revoke_all_tokens_action_revokes_every_active_token(as_alice, acme_camera, disconnects):
    clears = [acme_camera.issue_token()[0] for _ in range(2)]
    _action(as_alice, Device, "revoke_all_tokens", acme_camera.pk)
    assert {authenticate_token(clear)[0] for clear in clears} == {AuthResult.REVOKED}


def test_the_revoke_box_on_the_device_page_revokes_that_token(acme_camera):
    clear, row = acme_camera.issue_token()
    form = TokenInlineForm(data={"label": "kept", "revoke": "on"}, instance=row)
    assert form.is_valid(), form.errors
    form.save()
    row.refresh_from_db()
    assert row.label == "kept" and row.revoked_at is not None
    assert authenticate_token(clear)[0] == AuthResult.REVOKED


def test_the_token_digest_is_never_a_form_field(as_alice, acme_camera):
    acme_camera.issue_token()
    page = as_alice.get(reverse("admin:streams_device_change", args=[acme_camera.pk])).content.decode()
    assert "digest" not in page
    assert 'name="tokens-0-revoke"' in page and 'name="tokens-0-label"' in page


# -- enable / disable -----------------------------------------------------------------------------
def test_disabling_devices_disconnects_them_after_commit(
    as_alice, acme_camera, disconnects, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _action(as_alice, Device, "disable_devices", acme_camera.pk)
    acme_camera.refresh_from_db()
    assert not acme_camera.enabled
    assert disconnects == [(acme_camera.pk, "disabled")]
    _action(as_alice, Device, "enable_devices", acme_camera.pk)
    acme_camera.refresh_from_db()
    assert acme_camera.enabled


def test_unticking_enabled_on_the_device_page_disconnects_it(
    as_alice, acme_camera, disconnects, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = as_alice.post(
            reverse("admin:streams_device_change", args=[acme_camera.pk]), _device_form(acme_camera, enabled=None)
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    acme_camera.refresh_from_db()
    assert not acme_camera.enabled and disconnects == [(acme_camera.pk, "disabled")]


# -- roles --------------------------------------------------------------------------------------------
def test_a_viewer_on_staff_may_look_but_not_change(client, carol, acme_camera):
    _staff(carol)
    client.force_login(carol)
    page = client.get(reverse("admin:streams_device_change", args=[acme_camera.pk])).content.decode()
    assert "Front door" in page and 'name="_save"' not in page
    client.post(reverse("admin:streams_device_change", args=[acme_camera.pk]), _device_form(acme_camera, name="renamed"))
    acme_camera.refresh_from_db()
    assert acme_camera.name == "Front door"
    assert client.get(reverse("admin:accounts_membership_changelist")).status_code == 403


def _same(first, second, *variable):
    """Two responses that must not differ except for the values the owner typed."""
    a, b = first.content.decode(), second.content.decode()
    for old, new in variable:
        a = a.replace(old, new)
    a, b = (re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", x) for x in (a, b))
    return first.status_code == second.status_code and first.get("Location") == second.get("Location") and a == b


def test_the_membership_add_form_says_nothing_about_usernames_outside_the_organisation(
    as_alice, acme, django_user_model
):
    django_user_model.objects.create_user(username="zed", password="password")  # in no organisation
    url = reverse("admin:accounts_membership_add")
    existing = as_alice.post(url, {"user": "zed", "organisation": str(acme.pk), "role": "viewer"})
    unknown = as_alice.post(url, {"user": "nobody", "organisation": str(acme.pk), "role": "viewer"})
    assert _same(existing, unknown), (existing.status_code, unknown.status_code)
    assert existing.status_code == 403 and "No active user" not in unknown.content.decode()
    assert not Membership.objects.filter(user__username="zed").exists()


def test_the_organisation_page_cannot_add_a_member_by_username(as_alice, acme, alice, django_user_model):
    django_user_model.objects.create_user(username="zed", password="password")
    memberships = list(acme.memberships.select_related("user").order_by("pk"))
    data = _org_form(acme, memberships)
    data.update({"memberships-TOTAL_FORMS": len(memberships) + 1, "memberships-1-organisation": str(acme.pk),
                 "memberships-1-user": "zed", "memberships-1-role": "viewer"})
    page = as_alice.get(reverse("admin:accounts_organisation_change", args=[acme.pk])).content.decode()
    assert 'name="memberships-MAX_NUM_FORMS" value="0"' in page  # no empty row to fill in
    as_alice.post(reverse("admin:accounts_organisation_change", args=[acme.pk]), data)
    assert not Membership.objects.filter(user__username="zed").exists()


def test_an_existing_members_person_cannot_be_swapped_for_another_username(as_alice, acme, bob, django_user_model):
    django_user_model.objects.create_user(username="zed", password="password")
    bobs = Membership.objects.get(user=bob)
    as_alice.post(reverse("admin:accounts_membership_change", args=[bobs.pk]),
                  {"user": "zed", "organisation": str(acme.pk), "role": "operator"})
    bobs.refresh_from_db()
    assert bobs.user == bob and not Membership.objects.filter(user__username="zed").exists()


def test_owners_invite_by_email_and_the_answer_is_the_same_for_known_and_unknown_addresses(
    as_alice, acme, django_user_model, mailoutbox
):
    django_user_model.objects.create_user(username="zed", email="zed@example.org", password="password")
    url = reverse("admin:accounts_invitation_add")
    page = as_alice.get(url).content.decode()
    assert 'name="email"' in page and "Globex" not in page
    known = as_alice.post(url, {"organisation": str(acme.pk), "email": "zed@example.org", "role": "viewer"}, follow=True)
    unknown = as_alice.post(url, {"organisation": str(acme.pk), "email": "new@example.org", "role": "viewer"},
                            follow=True)
    assert known.status_code == unknown.status_code == 200
    assert known.redirect_chain == unknown.redirect_chain
    assert "Invitation sent to zed@example.org" in known.content.decode()
    messages_of = lambda r: [str(m).replace("zed@", "new@") for m in r.context["messages"]]  # noqa: E731
    assert messages_of(known) == messages_of(unknown)
    assert sorted(m.to[0] for m in mailoutbox) == ["new@example.org", "zed@example.org"]
    assert not Membership.objects.filter(user__username="zed").exists()  # joins only by accepting


def test_superusers_still_add_an_existing_login_by_username(admin_client, acme, django_user_model):
    django_user_model.objects.create_user(username="zed", password="password")
    url = reverse("admin:accounts_membership_add")
    admin_client.post(url, {"user": "zed", "organisation": str(acme.pk), "role": "viewer"})
    assert Membership.objects.filter(user__username="zed", organisation=acme).exists()


def test_the_outsider_cannot_add_himself_to_acme(as_mallory, acme, mallory):
    as_mallory.post(
        reverse("admin:accounts_membership_add"), {"user": "mallory", "organisation": str(acme.pk), "role": "owner"}
    )
    assert not Membership.objects.filter(organisation=acme, user=mallory).exists()


def test_only_superusers_create_organisations(as_alice, admin_client):
    assert as_alice.get(reverse("admin:accounts_organisation_add")).status_code == 403
    assert admin_client.get(reverse("admin:accounts_organisation_add")).status_code == 200
    assert Organisation.objects.count() == 2


def test_device_grants_offer_only_the_owners_members_and_devices_and_must_match(as_alice, acme, acme_camera, globex_camera, bob, mallory):
    url = reverse("admin:accounts_devicegrant_add")
    page = as_alice.get(url).content.decode()
    assert "Front door" in page and "bob" in page
    assert "Loading bay" not in page and "mallory" not in page
    bobs = Membership.objects.get(user=bob)
    response = as_alice.post(url, {"membership": bobs.pk, "device": str(globex_camera.pk)})
    assert "Select a valid choice" in response.content.decode()
    assert not bobs.grants.exists()
    as_alice.post(url, {"membership": bobs.pk, "device": str(acme_camera.pk)})
    assert list(bobs.grants.values_list("device", flat=True)) == [acme_camera.pk]


def test_a_grant_cannot_join_a_member_to_another_organisations_device(acme, globex_camera, bob):
    from accounts.admin import DeviceGrantForm

    form = DeviceGrantForm(data={"membership": Membership.objects.get(user=bob).pk, "device": str(globex_camera.pk)})
    assert not form.is_valid()
    assert form.errors["__all__"] == ["The device must belong to the member's organisation."]


def _org_form(org, memberships, **row_changes):
    data = {
        "name": org.name,
        "slug": org.slug,
        "storage_quota_bytes": org.storage_quota_bytes,
        "memberships-TOTAL_FORMS": len(memberships),
        "memberships-INITIAL_FORMS": len(memberships),
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
    }
    for index, membership in enumerate(memberships):
        row = {"id": membership.pk, "organisation": str(org.pk), "user": membership.user.username, "role": membership.role}
        row.update(row_changes.get(membership.user.username, {}))
        data.update({f"memberships-{index}-{key}": value for key, value in row.items()})
    return data


def test_the_last_owner_cannot_be_demoted_or_removed(as_alice, acme, alice, bob):
    memberships = list(acme.memberships.select_related("user").order_by("pk"))
    url = reverse("admin:accounts_organisation_change", args=[acme.pk])
    response = as_alice.post(url, _org_form(acme, memberships, alice={"role": "viewer"}))
    assert "at least one owner" in response.content.decode()
    response = as_alice.post(url, _org_form(acme, memberships, alice={"DELETE": "on"}))
    assert "at least one owner" in response.content.decode()
    assert Membership.objects.get(user=alice).role == "owner"
    alices = Membership.objects.get(user=alice)
    assert as_alice.get(reverse("admin:accounts_membership_delete", args=[alices.pk])).status_code == 403
    response = as_alice.post(
        reverse("admin:accounts_membership_change", args=[alices.pk]),
        {"user": "alice", "organisation": str(acme.pk), "role": "viewer"},
    )
    assert "at least one owner" in response.content.decode()


def test_ownership_can_be_handed_over_in_one_save(as_alice, acme, alice, bob):
    memberships = list(acme.memberships.select_related("user").order_by("pk"))
    response = as_alice.post(
        reverse("admin:accounts_organisation_change", args=[acme.pk]),
        _org_form(acme, memberships, alice={"role": "operator"}, bob={"role": "owner"}),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert {m.user.username: m.role for m in acme.memberships.select_related("user")} == {"alice": "operator", "bob": "owner"}
