"""Remembers which organisation the user is looking at (members of several can switch)."""
from accounts.tenancy import organisations_for

SESSION_KEY = "current_organisation_id"


class CurrentOrganisationMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.organisation = None
        if request.user.is_authenticated:
            orgs = organisations_for(request.user)
            chosen = request.session.get(SESSION_KEY)
            org = orgs.filter(pk=chosen).first() if chosen else None
            request.organisation = org or orgs.first()
        return self.get_response(request)
