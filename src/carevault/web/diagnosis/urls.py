from django.urls import path

from . import views

app_name = "diagnosis"
urlpatterns = [
    path("patients/<uuid:patient_id>/", views.run, name="run"),
]
