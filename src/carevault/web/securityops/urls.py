from django.urls import path

from . import views

app_name = "securityops"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("audit/", views.audit_table, name="audit_table"),
    path(
        "break-glass/<uuid:grant_id>/revoke/",
        views.revoke_break_glass,
        name="revoke_break_glass",
    ),
    path(
        "suspensions/<int:user_id>/lift/",
        views.lift_suspension,
        name="lift_suspension",
    ),
    path("blocked-addresses/unblock/", views.unblock_address, name="unblock_address"),
    path("users/", views.users, name="users"),
    path("users/new/", views.user_create, name="user_create"),
    path("users/<int:user_id>/", views.user_edit, name="user_edit"),
]
