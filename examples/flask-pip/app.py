"""Slipway's Flask example: gunicorn serves `app` on $PORT."""
import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    deployment = os.environ.get("SLIPWAY_DEPLOYMENT_ID", "(none)")
    return f"hello from flask, deployment {deployment}\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
