from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import Site, User


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ("code", "name")
    search_fields = ("code", "name")


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "email", "role", "study_wide", "is_active", "last_login")
    list_filter = ("role", "study_wide", "is_active", "sites")
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        ("Registry role", {"fields": ("role", "sites", "study_wide")}),
    )
    add_fieldsets = (
        *BaseUserAdmin.add_fieldsets,
        ("Registry role", {"fields": ("role", "sites", "study_wide")}),
    )
    filter_horizontal = ("sites", "groups", "user_permissions")
