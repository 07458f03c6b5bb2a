# One image for web, ws, worker, beat and tcp (docker-compose.yml and deploy/k8s/ pick the
# command: `python -m devstack.proc <name>`). Tagged with the project's version
# (pyproject.toml; docker-compose.yml's image: flashsale:<version>; a test holds them equal).
FROM python:3.11-slim

ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="flashsale" \
      org.opencontainers.image.version="${VERSION}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=flashsale_project.settings.production

WORKDIR /app
RUN useradd --system --create-home --uid 10001 flashsale \
    && install -d -o flashsale -g flashsale /var/lib/flashsale/alertmanager
# Production's requirements alone: the embedded servers requirements.txt adds are make run's.
COPY requirements-production.txt .
RUN pip install --no-cache-dir -r requirements-production.txt
COPY . .
# collectstatic needs a key and host names to import the settings; they are not the runtime's.
RUN SECRET_KEY=build-only ALLOWED_HOSTS=build-only python manage.py collectstatic --noinput --verbosity 0
USER flashsale

EXPOSE 8000 8001 8002
# The server's command line is written once, in devstack/procfile.py; the environment picks
# the shape (docs/development.md). docker-compose.yml runs the other processes the same way.
ENV LISTEN_HOST=0.0.0.0 \
    STATIC_ROOT=/app/staticfiles
# Liveness: the process serves (it asks no dependency, so Redis away restarts nothing).
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD ["python", "-m", "devstack.probes", "live", "web"]
CMD ["python", "-m", "devstack.proc", "web"]
