"""The Django admin for users, sites and log-in lockouts: roles that cannot be exceeded, every change audited.

Only a superuser grants superuser, staff, groups, permissions, the admin role
or study-wide access, edits sites, and manages other admins. An admin who is
not a superuser manages nurses and investigators only: of every site if she is
study-wide, else of her own sites (a user who also works at a site she does
not run is not hers: resetting that password would open the other site's
data). She lists, creates, edits, deactivates them and resets their passwords;
the fields she is not allowed to set are not on her form, so a tampered POST
cannot set them either. Every change is recorded with who and a reason.

Here, not in `accounts`, because `accounts` must not import the trail.
"""

from collections.abc import Callable
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, AdminUserCreationForm, UserChangeForm
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import second_factor
from accounts.models import Site, User
from accounts.permissions import visible_sites
from accounts.signals import account_changed
from audit import services
from audit.models import AuditEvent

MANAGED_ROLES = (User.Role.NURSE, User.Role.INVESTIGATOR)
REASON_REQUIRED = gettext_lazy("Give the reason for this change; it goes into the audit trail.")


def managed_users(actor: Any) -> QuerySet[User]:
    """The users `actor` may see and change in the admin."""
    users = User.objects.all()
    if actor.is_superuser:
        return users
    if not actor.is_active or actor.role != User.Role.ADMIN:
        return users.none()
    users = users.filter(role__in=MANAGED_ROLES, is_superuser=False, is_staff=False)
    if actor.sees_all_sites:
        return users
    mine = actor.sites.all()
    outside = Count("sites", filter=~Q(sites__in=mine), distinct=True)
    inside = Count("sites", filter=Q(sites__in=mine), distinct=True)
    return users.annotate(_outside=outside, _inside=inside).filter(_outside=0, _inside__gt=0)


def user_state(user: User) -> dict[str, Any]:
    """What the trail keeps of a user: every attribute a change could touch, never the password hash."""
    return {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "role": user.role,
        "sites": sorted(user.sites.values_list("code", flat=True)) if user.pk else [],
        "study_wide": user.study_wide,
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "groups": sorted(user.groups.values_list("name", flat=True)) if user.pk else [],
        "user_permissions": sorted(user.user_permissions.values_list("codename", flat=True)) if user.pk else [],
        "must_change_password": user.must_change_password,
    }


def _site_code(user: User) -> str:
    codes = list(user.sites.values_list("code", flat=True)[:2])
    return codes[0] if len(codes) == 1 else ""


def record_user_change(
    target: User, *, actor: Any, changes: dict[str, list[Any]], reason: str, action: str = AuditEvent.Action.UPDATE
) -> AuditEvent | None:
    if not changes:
        return None
    return services.record_change(
        action=action, instance=target, user=actor, changes=changes, reason=reason, site_code=_site_code(target)
    )


@receiver(account_changed, dispatch_uid="audit_account_changed")
def on_account_changed(
    sender: Any, target: User, actor: Any, changes: dict[str, list[Any]], reason: str, **kwargs: Any
) -> None:
    """Changes made by the accounts pages themselves (own password, own second factor)."""
    record_user_change(target, actor=actor, changes=changes, reason=reason)


def _reason_field() -> forms.CharField:
    return forms.CharField(
        label=gettext_lazy("Reason for change"),
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text=gettext_lazy("Required: it goes into the audit trail."),
    )


class ActorFormMixin:
    """Validation that depends on who is saving (set per request by UserAdmin.get_form)."""

    actor: Any = None

    def _check_scope(self, data: dict[str, Any]) -> None:
        actor = self.actor
        if actor is None or actor.is_superuser:
            return
        role = data.get("role")
        if role is not None and role not in MANAGED_ROLES:
            self.add_error("role", _("Only a superuser can give the administrator role."))  # type: ignore[attr-defined]
        sites = data.get("sites")
        if sites is not None:
            allowed = set(visible_sites(actor).values_list("pk", flat=True))
            if not sites:
                self.add_error("sites", _("Choose at least one site."))  # type: ignore[attr-defined]
            elif any(site.pk not in allowed for site in sites):
                self.add_error("sites", _("You can only give access to your own sites."))  # type: ignore[attr-defined]

    def _require_reason(self, data: dict[str, Any], needed: bool) -> None:
        if needed and not (data.get("reason_for_change") or "").strip():
            self.add_error("reason_for_change", REASON_REQUIRED)  # type: ignore[attr-defined]


class RegistryUserChangeForm(ActorFormMixin, UserChangeForm):
    reason_for_change = _reason_field()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        self._check_scope(data)
        self._require_reason(data, self.has_changed())
        return data


class RegistryUserCreationForm(ActorFormMixin, AdminUserCreationForm):
    reason_for_change = _reason_field()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        self._check_scope(data)
        self._require_reason(data, True)
        return data


class RegistryPasswordChangeForm(AdminPasswordChangeForm):
    """An admin sets someone's password: with a reason, and the user must change it at next log-in."""

    reason_for_change = _reason_field()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not (data.get("reason_for_change") or "").strip():
            self.add_error("reason_for_change", REASON_REQUIRED)
        return data

    def save(self, commit: bool = True) -> Any:
        self.user.must_change_password = self.user.has_usable_password() or bool(self.cleaned_data.get("password1"))
        return super().save(commit=commit)


PERSONAL = (gettext_lazy("Personal info"), {"fields": ("first_name", "last_name", "email")})
REASON = (gettext_lazy("Audit"), {"fields": ("reason_for_change",)})


def reason_action(
    description: str, perform: Callable[[Any, HttpRequest, Any, str], None], permissions: tuple[str, ...] = ("change",)
) -> Callable[..., HttpResponse | None]:
    """An admin action that asks for a reason on an intermediate page, then runs `perform` on each row."""

    def action(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        reason = (request.POST.get("reason_for_change") or "").strip()
        error = ""
        if request.POST.get("confirm"):
            if reason:
                with transaction.atomic():
                    for obj in queryset:
                        perform(modeladmin, request, obj, reason)
                modeladmin.message_user(
                    request,
                    _("%(action)s: %(count)d done.") % {"action": description, "count": len(queryset)},
                    messages.SUCCESS,
                )
                return None
            error = str(REASON_REQUIRED)
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": description,
            "objects": list(queryset),
            "action": request.POST.get("action", ""),
            "opts": modeladmin.model._meta,
            "error": error,
            "reason": reason,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "accounts/admin_reason_action.html", context)

    action.__name__ = perform.__name__.lstrip("_")  # the admin tells actions apart by name
    action.short_description = description  # type: ignore[attr-defined]
    action.allowed_permissions = permissions  # type: ignore[attr-defined]
    return action


def _remove_second_factor(modeladmin: Any, request: HttpRequest, user: User, reason: str) -> None:
    if second_factor.remove_all(user):
        record_user_change(
            user, actor=request.user, changes={"second_factor": ["authenticator app", None]}, reason=reason
        )


def _unlock_user(modeladmin: Any, request: HttpRequest, user: User, reason: str) -> None:
    if AxesProxyHandler.reset_attempts(username=user.get_username()):
        record_user_change(user, actor=request.user, changes={"locked_out": [True, False]}, reason=reason)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = RegistryUserChangeForm
    add_form = RegistryUserCreationForm
    change_password_form = RegistryPasswordChangeForm
    list_display = ("username", "email", "role", "site_codes", "study_wide", "is_active", "two_factor", "last_login")
    list_filter = ("role", "study_wide", "is_active", ("sites", admin.RelatedOnlyFieldListFilter))
    filter_horizontal = ("sites", "groups", "user_permissions")
    readonly_fields = ("last_login", "date_joined")
    actions = [
        reason_action(gettext_lazy("Unlock log-in (clear failed attempts)"), _unlock_user),
        reason_action(gettext_lazy("Remove second factor (lost phone)"), _remove_second_factor),
    ]

    @admin.display(description=gettext_lazy("Sites"))
    def site_codes(self, obj: User) -> str:
        return ", ".join(site.code for site in obj.sites.all())

    @admin.display(description=gettext_lazy("Second factor"), boolean=True)
    def two_factor(self, obj: User) -> bool:
        return TOTPDevice.objects.filter(user=obj, confirmed=True).exists()

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return managed_users(request.user).prefetch_related("sites")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        superuser = request.user.is_superuser  # type: ignore[union-attr]
        if obj is None:
            login = (None, {"classes": ("wide",), "fields": ("username", "usable_password", "password1", "password2")})
            role_fields = ("role", "sites", "study_wide") if superuser else ("role", "sites")
            return (login, PERSONAL, (gettext_lazy("Registry role"), {"fields": role_fields}), REASON)
        if superuser:
            return (
                *BaseUserAdmin.fieldsets,
                (gettext_lazy("Registry role"), {"fields": ("role", "sites", "study_wide", "must_change_password")}),
                REASON,
            )
        return (
            (None, {"fields": ("username", "password")}),
            PERSONAL,
            (gettext_lazy("Registry role"), {"fields": ("role", "sites", "is_active")}),
            (gettext_lazy("Important dates"), {"fields": ("last_login", "date_joined")}),
            REASON,
        )

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "sites":
            kwargs["queryset"] = visible_sites(request.user)  # type: ignore[arg-type]
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def formfield_for_choice_field(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "role" and not request.user.is_superuser:  # type: ignore[union-attr]
            kwargs["choices"] = [(value, label) for value, label in User.Role.choices if value in MANAGED_ROLES]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) and self._mine(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and self._mine(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # users are deactivated (audited), never deleted: the trail points at them

    def _mine(self, request: HttpRequest, obj: Any) -> bool:
        return obj is None or managed_users(request.user).filter(pk=obj.pk).exists()

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        form._audit_before = user_state(User.objects.get(pk=obj.pk)) if change else None
        if not change and obj.has_usable_password():
            obj.must_change_password = True  # the admin chose it; the user replaces it at first log-in
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        user = form.instance
        after = user_state(user)
        reason = form.cleaned_data.get("reason_for_change", "")
        before = getattr(form, "_audit_before", None)
        if before is None:
            changes = {k: [None, v] for k, v in after.items()}
            changes["password"] = [None, "(set by an admin)" if user.has_usable_password() else "(none)"]
            record_user_change(
                user, actor=request.user, changes=changes, reason=reason, action=AuditEvent.Action.CREATE
            )
        else:
            record_user_change(user, actor=request.user, changes=services.diff(before, after), reason=reason)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        with transaction.atomic():
            before = User.objects.filter(pk=id).values_list("password", flat=True).first() if id.isdigit() else None
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and before is not None:
                user = User.objects.get(pk=id)
                if user.password != before:
                    changes = {"password": ["(set)", "(set by an admin)" if user.has_usable_password() else "(none)"]}
                    if user.must_change_password:
                        changes["must_change_password"] = [False, True]
                    record_user_change(
                        user, actor=request.user, changes=changes, reason=request.POST.get("reason_for_change", "")
                    )
            return response


class SiteForm(forms.ModelForm):
    reason_for_change = forms.CharField(
        label=gettext_lazy("Reason for change"), widget=forms.Textarea(attrs={"rows": 2}), required=False
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk and self.has_changed() and not (data.get("reason_for_change") or "").strip():
            self.add_error("reason_for_change", REASON_REQUIRED)
        return data


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    """Everyone with the admin sees their own sites; only superusers add or change one (audited)."""

    form = SiteForm
    list_display = ("code", "name")
    search_fields = ("code", "name")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Site]:
        return visible_sites(request.user)  # type: ignore[arg-type]

    def save_model(self, request: HttpRequest, obj: Site, form: Any, change: bool) -> None:
        services.save_audited(obj, user=request.user, reason=form.cleaned_data.get("reason_for_change", ""))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)  # type: ignore[union-attr]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)  # type: ignore[union-attr]


def _unlock_attempt(modeladmin: Any, request: HttpRequest, attempt: AccessAttempt, reason: str) -> None:
    services.record_event(
        action=AuditEvent.Action.UPDATE,
        user=request.user,
        reason=reason,
        extra={
            "unlocked": {"username": attempt.username, "ip_address": attempt.ip_address},
            "failures": attempt.failures_since_start,
        },
    )
    attempt.delete()


@admin.register(AccessAttempt)
class AccessAttemptAdmin(admin.ModelAdmin):
    """Failed log-ins still counted towards a lock; unlocking deletes them, with a reason, in the trail."""

    list_display = ("attempt_time", "username", "ip_address", "failures_since_start")
    search_fields = ("username", "ip_address")
    fields = ("attempt_time", "username", "ip_address", "user_agent", "path_info", "failures_since_start")
    readonly_fields = fields
    actions = [reason_action(gettext_lazy("Unlock (clear these failed attempts)"), _unlock_attempt, ("view",))]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessAttempt]:
        attempts = super().get_queryset(request)
        user = request.user
        if user.is_superuser or user.sees_all_sites:  # type: ignore[union-attr]
            return attempts
        return attempts.filter(username__in=managed_users(user).values("username"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # only through the unlock action, which asks for a reason


# django-otp's own device admins would change second factors without a reason or a trail entry.
for model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
