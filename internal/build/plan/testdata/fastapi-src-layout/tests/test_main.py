from fastapi import FastAPI

app = FastAPI()  # a test app: never the entry point
