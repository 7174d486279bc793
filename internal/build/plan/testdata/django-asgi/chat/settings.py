SECRET_KEY = "x"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
ROOT_URLCONF = "chat.urls"
WSGI_APPLICATION = "chat.wsgi.application"
ASGI_APPLICATION = "chat.asgi.application"
