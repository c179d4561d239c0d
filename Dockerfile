# Sightline image: one image for web (uvicorn), worker and beat (docker-compose.yml).
# Build: docker build -t sightline .

# -- front-end files (hls.js) from the npm lockfile; node stays out of the final image
FROM python:3.11-slim-bookworm AS frontend
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/build-frontend scripts/build-frontend
RUN bash scripts/build-frontend

# -- the application
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SIGHTLINE_VAR_DIR=/var/lib/sightline \
    SPOOL_DIR=/var/lib/sightline/spool \
    MEDIA_ROOT=/var/lib/sightline/media \
    LOG_FORMAT=json
WORKDIR /app
COPY requirements.txt .
# requirements.txt installs ./agent (the device agent and the protocol module), so it comes first
COPY agent agent
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
COPY --from=frontend /src/frontend/static/vendor frontend/static/vendor
# Static files are baked into the image (served by WhiteNoise); spool and media are volumes.
# (A namespace given here, so the build writes no var/namespace into the image:
# each installation generates its own at its first start.)
RUN SECRET_KEY=collectstatic-only SIGHTLINE_NAMESPACE=image-build python manage.py collectstatic --noinput -v 0 \
    && useradd --system --uid 10001 --home-dir /var/lib/sightline sightline \
    && mkdir -p /var/lib/sightline/spool /var/lib/sightline/media \
    && chown -R sightline /var/lib/sightline
USER sightline
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"
# project/serve.py runs uvicorn; behind a load balancer set TRUSTED_PROXIES to its address
# (X-Forwarded-For is ignored from anyone else, and entirely when it is empty).
CMD ["python", "-m", "project.serve", "--host", "0.0.0.0", "--port", "8000"]
