"""Cookies are Secure whenever the request came over TLS.

Django's SESSION_COOKIE_SECURE / CSRF_COOKIE_SECURE are fixed at start (SIGHTLINE_TLS
sets both). This middleware also marks every cookie of a response Secure when its
request was HTTPS -- request.is_secure(), i.e. the ASGI scope's scheme, which the
server takes from X-Forwarded-Proto only for TRUSTED_PROXIES -- so a portal behind
TLS gets Secure cookies even if nobody set SIGHTLINE_TLS. Placed before the session
and CSRF middleware, so it sees the cookies they set on the way out.
"""


class SecureCookiesOverTLS:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.is_secure():
            for morsel in response.cookies.values():
                morsel["secure"] = True
        return response
