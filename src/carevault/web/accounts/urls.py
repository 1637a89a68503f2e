from django.contrib.auth import views as auth_views
from django.urls import path

from carevault.web.login import views as login_views

from . import views

app_name = "accounts"
urlpatterns = [
    # Credentials arrive only as encrypted login packets (login/views.py); the page is GET only.
    path("login/", login_views.login_page, name="login"),
    path("login/challenge/", login_views.login_challenge, name="login_challenge"),
    path("login/packet/", login_views.login_packet, name="login_packet"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("register/", views.register, name="register"),
]
