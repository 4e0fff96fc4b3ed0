# RadiantGo: one image for every process (ingress, workers, beat, Flower, and
# the one-shot database migration); docker-compose.yml picks the command. Settings come only from the environment
# (core/settings.py), so nothing here is deployment-specific.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies first, so a code change does not reinstall them. Every pin
# (numpy, shapely) has a manylinux wheel, so no compiler is needed.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

RUN groupadd --system --gid 10001 radiantgo \
    && useradd --system --uid 10001 --gid radiantgo --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin radiantgo

COPY core/ ./core/
COPY ingress/ ./ingress/
COPY workers/ ./workers/
COPY tools/ ./tools/
COPY celeryconfig.py ./

USER radiantgo:radiantgo

EXPOSE 5000

# Listens on every interface inside the container; compose publishes only nginx.
# --keep-alive 75 outlasts nginx's idle upstream connections (60 s), so nginx
# never reuses a socket gunicorn has just closed (a 502 on a POST it won't retry).
CMD ["sh", "-c", "exec gunicorn --bind 0.0.0.0:5000 --worker-class ingress.serving.StampingThreadWorker --workers \"${WEB_WORKERS:-2}\" --threads \"${WEB_THREADS:-32}\" --timeout 30 --graceful-timeout 10 --keep-alive 75 'ingress:create_app()'"]
