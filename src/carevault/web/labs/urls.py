from django.urls import path

from . import views

app_name = "labs"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("requests/<uuid:request_id>/", views.request_detail, name="request_detail"),
    path("files/<uuid:file_id>/", views.file, name="file"),
]
