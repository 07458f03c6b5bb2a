# One image for web, ws, worker, beat and tcp (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=flashsale_project.settings.production

WORKDIR /app
RUN useradd --system --create-home --uid 10001 flashsale
# Production's requirements alone: the embedded servers requirements.txt adds are make run's.
COPY requirements-production.txt .
RUN pip install --no-cache-dir -r requirements-production.txt
COPY . .
# collectstatic needs a key to import the settings; it is not the runtime key.
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput --verbosity 0
USER flashsale

EXPOSE 8000 8001 8002
# The server's command line is written once, in devstack/procfile.py; the environment picks
# the shape (docs/development.md). docker-compose.yml runs the other processes the same way.
ENV LISTEN_HOST=0.0.0.0 \
    STATIC_ROOT=/app/staticfiles
CMD ["python", "-m", "devstack.proc", "web"]
