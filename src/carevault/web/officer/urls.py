from django.urls import path

from . import views

app_name = "officer"
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
    path("diagnosis-clients/<int:cut_off_id>/lift/", views.lift_cut_off, name="lift_cut_off"),
    path("incidents/", views.incidents, name="incidents"),
    path(
        "incidents/<int:incident_id>/acknowledge/",
        views.acknowledge_incident,
        name="acknowledge_incident",
    ),
    path(
        "incidents/<int:incident_id>/escalate/", views.escalate_incident, name="escalate_incident"
    ),
    path("incidents/<int:incident_id>/close/", views.close_incident, name="close_incident"),
    path("responses/", views.security_state, name="security_state"),
    path("responses/<int:response_id>/lift/", views.lift_response, name="lift_response"),
    path("floor/lower/", views.lower_floor, name="lower_floor"),
    path("risk-timeline.json", views.risk_timeline, name="risk_timeline"),
    path("encryption/", views.encryption_page, name="encryption"),
    path("encryption/jobs/", views.reencryption_jobs, name="reencryption_jobs"),
    path("encryption/reencrypt/", views.start_reencryption, name="start_reencryption"),
    path("jobs/", views.jobs_page, name="jobs"),
    path("jobs/table/", views.jobs_table, name="jobs_table"),
    path("jobs/queue/", views.queue_job, name="queue_job"),
    path("jobs/<int:run_id>/retry/", views.retry_job, name="retry_job"),
    path("users/", views.users, name="users"),
    path("users/new/", views.user_create, name="user_create"),
    path("users/<int:user_id>/", views.user_edit, name="user_edit"),
]
