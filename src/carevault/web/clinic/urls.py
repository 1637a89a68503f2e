from django.urls import path

from . import views

app_name = "clinic"
urlpatterns = [
    # Doctors
    path("doctor/", views.doctor_home, name="doctor_home"),
    path(
        "doctor/appointments/<uuid:appointment_id>/decide/",
        views.decide_appointment,
        name="decide_appointment",
    ),
    path("patients/<uuid:patient_id>/", views.patient_detail, name="patient_detail"),
    path(
        "patients/<uuid:patient_id>/sections/<slug:section>/",
        views.record_section,
        name="record_section",
    ),
    path("patients/<uuid:patient_id>/break-glass/", views.break_glass, name="break_glass"),
    path("patients/<uuid:patient_id>/diagnoses/", views.add_diagnosis, name="add_diagnosis"),
    path("patients/<uuid:patient_id>/notes/", views.add_note, name="add_note"),
    path("patients/<uuid:patient_id>/prescriptions/", views.prescribe, name="prescribe"),
    path(
        "patients/<uuid:patient_id>/lab-requests/",
        views.request_lab_test,
        name="request_lab_test",
    ),
    # Patients
    path("me/", views.patient_home, name="patient_home"),
    path("me/sections/<slug:section>/", views.own_section, name="own_section"),
    path("me/history/", views.patient_history, name="patient_history"),
    path("me/appointments/", views.book_appointment, name="book_appointment"),
    path(
        "me/appointments/<uuid:appointment_id>/cancel/",
        views.cancel_appointment,
        name="cancel_appointment",
    ),
]
