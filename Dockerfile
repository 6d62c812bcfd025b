# syntax=docker/dockerfile:1

# One pinned base for both stages, so the wheels built below match the runtime's Python.
# Override with --build-arg PYTHON_IMAGE=... to move to a newer patch release.
ARG PYTHON_IMAGE=python:3.12.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter

# Builds the cml-exporter wheel and a wheel for every dependency, so the final stage
# installs from /wheels alone and never runs a build backend or reaches the registry.
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="cml-exporter" \
      org.opencontainers.image.description="Prometheus exporter for fleets of Cisco Modeling Labs (CML 2.x) controllers" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The wheels are bind-mounted from the builder rather than copied, so they never become a
# layer of this image. pip is removed afterwards because nothing installs at run time.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels /wheels/cml_exporter-*.whl \
    && python -m pip uninstall --yes pip

# A numeric user, so Kubernetes' runAsNonRoot can check it without a passwd entry.
USER 65532:65532

# The configuration is mounted at /etc/cml-exporter/config.yaml and password files under
# /run/secrets (for example password_file: /run/secrets/cml-password).
EXPOSE 9877

# urllib raises on a refused connection or a non-2xx status, so the check fails with it.
# The port is the one in CMD; change both when serving on another port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9877/-/healthy', timeout=4)"]

ENTRYPOINT ["cml-exporter"]
CMD ["--config.file=/etc/cml-exporter/config.yaml", "--web.listen-address=:9877"]
