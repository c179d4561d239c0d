"""Forms of the portal pages."""
from django import forms

from accounts.tenancy import organisations_for


class OrganisationSwitchForm(forms.Form):
    """Choose which of the user's organisations the portal shows. Only organisations
    the user is a member of are valid choices, so a forged id is a form error."""

    organisation = forms.ModelChoiceField(queryset=None, empty_label=None, to_field_name="pk")
    next = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organisation"].queryset = organisations_for(user)
