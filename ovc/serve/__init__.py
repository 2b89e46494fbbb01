"""HTTP service: ``ovc serve`` (FastAPI + uvicorn), see :mod:`ovc.serve.app`."""
