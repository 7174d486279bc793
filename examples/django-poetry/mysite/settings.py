"""Settings of Slipway's Django example: one view, no database."""
import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "slipway-example-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = []
MIDDLEWARE = []
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
DATABASES = {}
USE_TZ = True
