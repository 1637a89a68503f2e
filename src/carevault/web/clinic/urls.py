from django.urls import path  # noqa: F401

app_name = "clinic"
urlpatterns: list = []  # type: ignore[type-arg]
