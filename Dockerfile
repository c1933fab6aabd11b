# One image for web and workers. GPU workers use the same image on the NVIDIA runtime:
# the pinned torch wheel from PyPI is a CUDA build and falls back to the CPU without a GPU.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 OMP_WAIT_POLICY=PASSIVE
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libjpeg62-turbo && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY searchsite searchsite
COPY catalog catalog
COPY embeddings embeddings
COPY ml ml
RUN pip install --no-cache-dir -e .
COPY . .
EXPOSE 8000
# gunicorn as `make run` serves it (searchsite.supervisor.gunicorn_argv); WEB_WORKERS sets how many.
CMD ["python", "-m", "searchsite.supervisor", "--bind", "0.0.0.0:8000"]
