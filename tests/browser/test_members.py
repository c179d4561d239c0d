"""In Chromium: an owner invites a member by email, the link from the email opens, the new member
sets a password and lands in the portal; the token page after adding a device copies and downloads
the token and shows the portal's real device URL."""
import re
from pathlib import Path

import pytest

from tests.support import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LINK = re.compile(r"https?://\S+/invite/[A-Za-z0-9_-]+/")


def _mail_to(stack_env, address: str) -> str:
    """The body of the invitation the server wrote with the file email backend."""
    def found():
        for path in Path(stack_env["EMAIL_FILE_PATH"]).glob("*.log"):
            text = path.read_text(errors="replace")
            if f"To: {address}" in text:
                return text
        return None
    return wait_until(found, 10, f"the invitation email to {address}")


def test_an_owner_invites_a_member_who_sets_a_password_and_lands_in_the_portal(
    personas, portal, stack_env
):
    owner = portal()
    page = owner.login("alice")
    page.click("text=Members")
    page.wait_for_function("() => window.sightline && window.sightline.ready")
    page.fill("#id_email", "dora@example.org")
    page.select_option("#id_role", "operator")
    with page.expect_navigation():
        page.click("#invite-form button[type=submit]")
    assert "Invitation sent to dora@example.org" in page.inner_text("#messages")
    assert "dora@example.org" in page.inner_text("#invitations")

    link = LINK.search(_mail_to(stack_env, "dora@example.org")).group(0)
    newcomer = portal()
    invited = newcomer.new_page()
    invited.goto(link)
    assert "Join Acme" in invited.inner_text("h1")
    invited.fill("#id_password1", "a long new password")
    invited.fill("#id_password2", "a long new password")
    with invited.expect_navigation():
        invited.click("#set-password button[type=submit]")
    assert invited.url.rstrip("/") == owner.base_url  # the wall
    assert "dora@example.org · operator" in invited.inner_text(".who")
    assert "Acme" in invited.inner_text("h1")

    again = portal().new_page()
    response = again.goto(link)
    assert response.status == 410 and "does not work" in again.inner_text("h1")
    page.goto("/members/")
    assert "dora@example.org" in page.inner_text("#members")
    assert owner.console_errors == [] and newcomer.console_errors == []


def test_the_token_page_copies_and_downloads_the_token_and_shows_the_real_url(personas, acme, portal, server):
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(username="alice").update(is_staff=True)
    owner = portal()
    owner.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server["url"])
    page = owner.login("alice")
    missing = []
    page.on("response", lambda r: r.status == 404 and missing.append(r.url))
    page.goto("/admin/streams/device/add/")
    page.select_option("#id_organisation", str(acme.pk))
    page.fill("#id_name", "Side gate")
    with page.expect_navigation():
        page.click("input[name=_save]")
    token = page.inner_text("#token-1").strip()
    assert re.fullmatch(r"sl_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}", token)
    assert page.inner_text("#device-url") == f"{server['ws']}/ws/device/"  # wss:// over HTTPS
    assert "YOUR-HOST" not in page.content()

    page.click("button[data-copy=token-1]")
    page.wait_for_function("() => window.sightline && window.sightline.copied === 'token-1'")
    assert page.evaluate("navigator.clipboard.readText()") == token

    with page.expect_download() as download:
        page.click("button[data-download=token-1]")
    assert download.value.suggested_filename.startswith("side-gate-") and download.value.suggested_filename.endswith(".token")
    assert Path(download.value.path()).read_text() == token + "\n"
    assert token not in download.value.url  # made in the page (blob:), not fetched with the token in a URL
    # The admin has no favicon link, so Chromium's /favicon.ico 404 is logged (it is no page
    # request); every resource the page itself loads (token_page.js included) must load.
    assert missing == [] and [e for e in owner.console_errors if "Failed to load resource" not in e] == []
