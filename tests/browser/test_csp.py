"""The portal runs under its Content-Security-Policy: every browser test fails on a violation
(tests/browser/conftest.py); this checks that such a violation is really caught, and that the
device page's early socket (the one inline script, with the nonce) runs."""
import pytest

from tests.browser.conftest import is_csp_violation

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_page_that_breaks_the_policy_is_caught_and_the_nonced_script_runs(personas, acme_camera, portal):
    browser = portal()
    page = browser.login("carol")
    response = page.goto(f"/devices/{acme_camera.pk}/")
    assert "script-src 'self' 'nonce-" in response.headers["content-security-policy"]
    assert page.evaluate("() => !!window.sightlineEarlySocket")  # the inline script ran
    assert browser.csp_violations == []

    # An injected inline script must be refused, and the refusal reported.
    browser.csp_violations_expected = True  # this portal only: the others still fail on one
    with page.expect_console_message(lambda message: is_csp_violation(message.text)):
        page.evaluate("""() => {
          const s = document.createElement('script');
          s.textContent = 'window.injected = true';
          document.body.appendChild(s);
        }""")
    assert page.evaluate("() => window.injected === undefined")
    assert any("script-src" in violation for violation in browser.csp_violations), browser.csp_violations
