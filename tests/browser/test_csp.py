"""The portal runs under its Content-Security-Policy: every browser test fails on a violation
(tests/browser/conftest.py); this checks that such a violation is really caught, and that the
device page's early socket (the one inline script, with the nonce) runs."""
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_page_that_breaks_the_policy_is_caught_and_the_nonced_script_runs(personas, acme_camera, portal):
    browser = portal()
    page = browser.login("carol")
    response = page.goto(f"/devices/{acme_camera.pk}/")
    assert "script-src 'self' 'nonce-" in response.headers["content-security-policy"]
    assert page.evaluate("() => !!window.sightlineEarlySocket")  # the inline script ran

    # An injected inline script must be refused and reported.
    page.evaluate("""() => {
      const s = document.createElement('script');
      s.textContent = 'window.injected = true';
      document.body.appendChild(s);
    }""")
    page.wait_for_function("() => window.cspViolations.length > 0")
    assert page.evaluate("() => window.injected === undefined")
    page.wait_for_function("() => document.readyState === 'complete'")
    assert any("script-src" in v for v in browser.csp_violations), browser.csp_violations
    browser.csp_violations.clear()  # expected here; any other fails the test at teardown
    browser.console_errors.clear()
