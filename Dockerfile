FROM python:3.13-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# pg_dump/pg_restore for manage.py backup and restore; Pango for the PDF report (WeasyPrint), Noto CJK for its Chinese
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client libpango-1.0-0 libpangoft2-1.0-0 \
    fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*
# Runtime requirements only: the test and lint tools are in requirements-dev.txt.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# Static files are collected at build time (no database or secret needed, none kept).
RUN DJANGO_DEBUG=False SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v0
# An unprivileged user that owns nothing but the media folder.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin registry \
    && mkdir -p /data/media && chown registry /data/media
USER registry
EXPOSE 8000
# Workers, timeout and bind from gunicorn.conf.py (WEB_CONCURRENCY); nginx in front (docker-compose.yml).
CMD ["gunicorn", "registry.wsgi:application"]
