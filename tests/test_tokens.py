"""Device tokens: hashed at rest, constant-time checks, rotation, revocation."""
import pytest

from sightline_agent import tokens
from streams.models import AuthResult, DeviceToken, authenticate_token


def test_a_token_is_stored_only_as_a_hash(acme_camera):
    clear, row = acme_camera.issue_token()
    stored = DeviceToken.objects.get(pk=row.pk)
    assert clear not in (stored.digest, stored.prefix)
    assert stored.digest == tokens.digest(clear)
    assert clear.startswith(f"sl_{stored.prefix}_")
    for value in DeviceToken.objects.values_list("prefix", "digest", "label").get():
        assert clear != value


def test_verification_uses_constant_time_compare(monkeypatch, acme_camera):
    clear, _ = acme_camera.issue_token()
    calls = []
    real = tokens.hmac.compare_digest
    monkeypatch.setattr(tokens.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    assert authenticate_token(clear)[0] == AuthResult.OK
    assert calls


@pytest.mark.parametrize("bad", ["", "nope", "sl_short_x", "sl_ABCDEFGH_" + "x" * 43])
def test_malformed_or_unknown_tokens_are_refused(acme_camera, bad):
    result, row = authenticate_token(bad)
    assert result in (AuthResult.MALFORMED, AuthResult.UNKNOWN) and row is None


def test_authentication_records_last_use(acme_camera):
    clear, row = acme_camera.issue_token()
    assert row.last_used_at is None
    result, found = authenticate_token(clear)
    assert result == AuthResult.OK and found.device == acme_camera
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_rotation_keeps_two_active_tokens(acme_camera):
    first, _ = acme_camera.issue_token()
    second, _ = acme_camera.issue_token()
    assert authenticate_token(first)[0] == AuthResult.OK
    assert authenticate_token(second)[0] == AuthResult.OK
    third, _ = acme_camera.issue_token()  # a third retires the oldest
    assert authenticate_token(first)[0] == AuthResult.REVOKED
    assert authenticate_token(second)[0] == AuthResult.OK
    assert authenticate_token(third)[0] == AuthResult.OK
    assert acme_camera.tokens.filter(revoked_at__isnull=True).count() == 2


def test_revoked_token_is_refused(acme_camera):
    clear, row = acme_camera.issue_token()
    row.revoke()
    assert authenticate_token(clear)[0] == AuthResult.REVOKED


def test_disabled_device_is_refused(acme_camera):
    clear, _ = acme_camera.issue_token()
    acme_camera.enabled = False
    acme_camera.save()
    assert authenticate_token(clear)[0] == AuthResult.DISABLED


def test_redact_keeps_only_the_prefix():
    clear, prefix, _ = tokens.generate()
    assert tokens.redact(clear) == f"sl_{prefix}_…"
    assert clear not in tokens.redact(clear)
