"""Forms of the portal pages."""
from django import forms

from accounts.models import Role
from accounts.tenancy import organisations_for


class OrganisationSwitchForm(forms.Form):
    """Choose which of the user's organisations the portal shows. Only organisations
    the user is a member of are valid choices, so a forged id is a form error."""

    organisation = forms.ModelChoiceField(queryset=None, empty_label=None, to_field_name="pk")
    next = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organisation"].queryset = organisations_for(user)


class InviteForm(forms.Form):
    # 150: the address becomes the new account's username.
    email = forms.EmailField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class DeviceRemovalForm(forms.Form):
    DELETE, ARCHIVE = "delete", "archive"
    recordings = forms.ChoiceField(
        choices=[
            (ARCHIVE, "Archive the device: disable it and hide it from the wall, keep its recordings replayable"),
            (DELETE, "Delete the device and all its recordings (cannot be undone)"),
        ],
        widget=forms.RadioSelect,
        error_messages={"required": "Choose what happens to the device's recordings."},
    )
