from accounts.tenancy import organisations_for, role_in


def organisations(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    org = getattr(request, "organisation", None)
    return {
        "organisations": organisations_for(user),
        "current_organisation": org,
        "current_role": role_in(user, org) if org else None,
    }
