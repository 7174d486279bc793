from fastapi import FastAPI

api = FastAPI(title="monorepo api")


@api.get("/")
def root():
    return {"ok": True}
