import os

from django.http import HttpResponse
from django.urls import path


def index(request):
    deployment = os.environ.get("SLIPWAY_DEPLOYMENT_ID", "(none)")
    return HttpResponse(f"hello from django, deployment {deployment}\n", content_type="text/plain; charset=utf-8")


urlpatterns = [path("", index)]
