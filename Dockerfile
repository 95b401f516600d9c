# syntax=docker/dockerfile:1.7
#
# glint — multi-stage image.
#   builder : builds wheels for glint and every pinned dependency (constraints.txt)
#   runtime : installs those wheels offline, runs as an unprivileged user.
#
# libvips: glint depends on pyvips-binary (setup.cfg install_requires), whose
# manylinux wheel ships libvips itself, so no system libvips is installed; the
# runtime stage checks at build time that pyvips loads it.
ARG PYTHON_IMAGE=python:3.11-slim

############################ builder ############################
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Toolchain only for dependencies that ship no wheel for this platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Constraints first so the dependency layer is cached when only code changes.
COPY constraints.txt ./
COPY . .
RUN pip wheel --wheel-dir /wheels -c constraints.txt .

############################ runtime ############################
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GLINT_HEALTH_PORT=8080

# Install from the builder's wheels only (no index): the image gets exactly the
# versions resolved against constraints.txt. The bind mount keeps /wheels out of
# the final layers.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl \
 && python -c "import pyvips; print('libvips', pyvips.version(0), pyvips.version(1), pyvips.version(2))" \
 && glint --help >/dev/null

COPY deploy/healthcheck.py /usr/local/bin/glint-healthcheck
RUN chmod 0755 /usr/local/bin/glint-healthcheck \
 && groupadd --system --gid 10001 glint \
 && useradd --system --uid 10001 --gid glint --home-dir /home/glint --create-home \
            --shell /usr/sbin/nologin glint

USER glint:glint
WORKDIR /home/glint

EXPOSE 8080

# Liveness: GET /healthz on GLINT_HEALTH_PORT (8080 for `serve`; the compose file
# sets 8081 for `consume`). See deploy/healthcheck.py.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["glint-healthcheck"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["glint"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
