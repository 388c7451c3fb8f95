# The RCP service as a container: slim Python, a non-root user, the data folder as a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 RCP_DATA_DIR=/data RCP_ENV=production
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 rcp && mkdir -p /data && chown rcp /data

WORKDIR /app
COPY pyproject.toml setup.py README.md alembic.ini ./
COPY rcp ./rcp
COPY media ./media
COPY alembic ./alembic
COPY web ./web
# gcc only for the build: media/wire.c (the media plane's native send path) is compiled by cffi at install.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir -e . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

USER rcp
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s CMD curl -fsS http://127.0.0.1:8000/health || exit 1
# Migrations run before serving; production mode refuses to start without RCP_SECRET_KEY and an https
# RCP_PUBLIC_URL (the address of the TLS reverse proxy in front of it).
CMD ["sh", "-c", "rcp migrate && exec rcp serve --host 0.0.0.0 --port 8000"]
