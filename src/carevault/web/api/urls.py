from django.urls import path, re_path

from . import views

app_name = "api"
urlpatterns = [
    path("me", views.me, name="me"),
    path("patients", views.patients, name="patients"),
    path("patients/<uuid:patient_id>", views.patient_record, name="patient_record"),
    path("patients/<uuid:patient_id>/notes", views.patient_notes, name="patient_notes"),
    path(
        "patients/<uuid:patient_id>/diagnoses",
        views.patient_diagnoses,
        name="patient_diagnoses",
    ),
    path("models/diagnosis/homomorphic", views.diagnosis_homomorphic, name="diagnosis_homomorphic"),
    path("lab/queue", views.lab_queue, name="lab_queue"),
    re_path(r"^(?P<path>.*)$", views.not_found, name="not_found"),
]
