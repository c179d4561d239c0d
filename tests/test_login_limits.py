"""Failed logins are limited per account and per address (django-axes); the login page says so;
the address is REMOTE_ADDR only; after the lockout expires the right password works again."""
from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

pytestmark = [pytest.mark.django_db]

LIMIT = 3


@pytest.fixture(autouse=True)
def small_limit():
    with override_settings(AXES_FAILURE_LIMIT=LIMIT, AXES_COOLOFF_TIME=timedelta(minutes=15)):
        yield


def log_in(username: str, password: str, address: str, **headers):
    client = Client()
    response = client.post("/login/", {"username": username, "password": password},
                           REMOTE_ADDR=address, **headers)
    return client, response


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def assert_locked_out(client, response) -> None:
    assert response.status_code == 429
    text = response.content.decode()
    assert "Too many failed log-ins for this account or from your address" in text
    assert "blocked for 15 minutes" in text
    assert 'name="password"' in text  # the login page itself, not a bare error
    assert not logged_in(client)


def test_an_account_is_locked_after_the_limit_whatever_the_address(personas):
    for n in range(LIMIT):
        client, response = log_in("carol", "wrong", f"10.1.0.{n}")
        if n < LIMIT - 1:
            assert response.status_code == 200 and "did not match" in response.content.decode()
    assert_locked_out(client, response)  # the failure that reaches the limit already says so
    client, response = log_in("carol", "password", "10.1.0.200")  # right password, fresh address
    assert_locked_out(client, response)
    # Another account from that fresh address is unaffected.
    client, response = log_in("bob", "password", "10.1.0.200")
    assert response.status_code == 302 and logged_in(client)


def test_an_address_is_locked_after_the_limit_whatever_the_account(personas):
    for username in ("nobody", "carol", "alice"):
        log_in(username, "wrong", "10.2.0.1")
    client, response = log_in("bob", "password", "10.2.0.1")
    assert_locked_out(client, response)
    # The same account from another address is unaffected.
    client, response = log_in("bob", "password", "10.2.0.2")
    assert response.status_code == 302 and logged_in(client)


def test_a_rotating_x_forwarded_for_does_not_escape_the_address_limit(personas):
    for n, username in enumerate(("nobody", "carol", "alice")):
        log_in(username, "wrong", "10.3.0.1", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
    client, response = log_in("bob", "password", "10.3.0.1", HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert_locked_out(client, response)


def test_the_right_password_works_again_once_the_lockout_has_expired(personas):
    from axes.models import AccessAttempt

    for n in range(LIMIT):
        log_in("carol", "wrong", "10.4.0.1")
    client, response = log_in("carol", "password", "10.4.0.1")
    assert_locked_out(client, response)
    # Let the cool-off pass (15 minutes and a second) without waiting for it.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))
    client, response = log_in("carol", "password", "10.4.0.1")
    assert response.status_code == 302 and logged_in(client)


def test_a_wrong_password_below_the_limit_never_blocks_the_right_one(personas):
    for _ in range(LIMIT - 1):
        log_in("carol", "wrong", "10.5.0.1")
    client, response = log_in("carol", "password", "10.5.0.1")
    assert response.status_code == 302 and logged_in(client)
