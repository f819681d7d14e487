# syntax=docker/dockerfile:1
# oneroster-proxy container image (README "Operations").
#
#   docker build -t oneroster-proxy .
#   docker run -p 8080:8080 -p 9090:9090 \
#     -v "$PWD/proxy.toml:/etc/oneroster-proxy/config.toml:ro" \
#     -e ORP_ADMIN_TOKEN -e SPRINGFIELD_KEY -e SPRINGFIELD_SECRET \
#     oneroster-proxy
#
# The config is a mounted file; secrets come from the environment through ${NAME} in it. In a
# container the config must listen on 0.0.0.0 (gateway 8080, admin 9090): see
# config/example.toml. The sqlite store lives on the /var/lib/oneroster-proxy volume; use a
# redis:// store for more than one replica.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# -- builder: wheels for the project and every dependency ---------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY proxy ./proxy
RUN python -m pip wheel --wheel-dir /wheels .

# -- final: the wheels installed into a venv, nothing else --------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="oneroster-proxy" \
      org.opencontainers.image.description="One stable URL and one bearer token for every school district's OneRoster API" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/oneroster-proxy/bin:$PATH
# The wheels come from a bind mount of the builder stage: they never become an image layer,
# and no compiler or build backend reaches this stage.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/oneroster-proxy \
    && /opt/oneroster-proxy/bin/pip install --no-index --find-links=/wheels oneroster-proxy \
    && /opt/oneroster-proxy/bin/pip uninstall --yes pip \
    && groupadd --system --gid 10001 oneroster \
    && useradd --system --uid 10001 --gid oneroster --home-dir /var/lib/oneroster-proxy \
       --shell /usr/sbin/nologin oneroster \
    && install -d -o oneroster -g oneroster -m 0750 /var/lib/oneroster-proxy \
    && install -d -m 0755 /etc/oneroster-proxy
WORKDIR /var/lib/oneroster-proxy
VOLUME ["/var/lib/oneroster-proxy"]
USER 10001:10001
# 8080: the gateway vendors call; 9090: the admin listener (/metrics, /healthz, /readyz, /admin).
EXPOSE 8080 9090
# No curl in a slim image: the interpreter asks the admin listener's /healthz itself.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["oneroster-proxy"]
CMD ["serve", "--config", "/etc/oneroster-proxy/config.toml"]
