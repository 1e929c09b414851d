# crmkpi serve in a container (docs/deployment.md#a-container). Build and run:
#   docker build -t crmkpi .
#   docker run -p 8700:8700 -e CRMKPI_API_TOKEN=... -e CRMKPI_STORE_URL=postgresql://... \
#              -v /srv/crm-exports:/data:ro crmkpi
FROM python:3.11-slim

WORKDIR /srv/crmkpi
COPY pyproject.toml README.md ./
COPY core core
COPY connectors connectors
COPY metrics_plugins metrics_plugins
RUN pip install --no-cache-dir . && useradd --system --home-dir /srv/crmkpi crmkpi \
    && mkdir -p build && chown crmkpi build
COPY config/service.yaml config/service.yaml

USER crmkpi
# Listening beyond loopback needs a token: the container refuses to start without CRMKPI_API_TOKEN.
ENV CRMKPI_HOST=0.0.0.0 \
    CRMKPI_DATA=/data
VOLUME ["/srv/crmkpi/build"]
EXPOSE 8700
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8700/health', timeout=4)"]
CMD ["crmkpi", "serve", "--config", "config/service.yaml", "--log-format", "json", "--stop-timeout", "60"]
