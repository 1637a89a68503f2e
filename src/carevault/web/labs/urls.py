from django.urls import path  # noqa: F401

app_name = "labs"
urlpatterns: list = []  # type: ignore[type-arg]
