"""Slipway's FastAPI example: uvicorn serves `app` on $PORT."""
import os

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
def index() -> str:
    return f"hello from fastapi, deployment {os.environ.get('SLIPWAY_DEPLOYMENT_ID', '(none)')}\n"
