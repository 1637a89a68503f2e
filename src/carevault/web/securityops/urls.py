from django.urls import path  # noqa: F401

app_name = "securityops"
urlpatterns: list = []  # type: ignore[type-arg]
