# syntax=docker/dockerfile:1
#
# temporal-migrator image: the migrator (Python) plus temporal-sql-tool and the vendor schema tree, both taken
# from temporalio/admin-tools at the Temporal release the migrator is tested against.
#
#   docker build -t temporal-migrator:dev .
#   docker build --build-arg ADMIN_TOOLS_TAG=<tag> -t temporal-migrator:dev .
#
# ADMIN_TOOLS_TAG must equal ADMIN_TOOLS_TAG in pins.env (the test suite checks it).

ARG ADMIN_TOOLS_TAG=1.32.2
ARG PYTHON_TAG=3.12-slim-bookworm

# --- temporal-sql-tool and /etc/temporal/schema, from the vendor's image -------------------------------------
FROM temporalio/admin-tools:${ADMIN_TOOLS_TAG} AS admin-tools

# --- the migrator, installed into a virtualenv ---------------------------------------------------------------
FROM python:${PYTHON_TAG} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY migrator ./migrator
RUN /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/temporal-migrator --help >/dev/null

# --- final image ----------------------------------------------------------------------------------------------
FROM python:${PYTHON_TAG}
ARG ADMIN_TOOLS_TAG
LABEL org.opencontainers.image.title="temporal-migrator" \
      org.opencontainers.image.description="Brings Temporal's PostgreSQL schemas to the target version safely" \
      io.temporal.admin-tools.tag="${ADMIN_TOOLS_TAG}"

# temporal-sql-tool is a static Go binary (CGO disabled), so the Alpine-built binary runs on Debian.
COPY --from=admin-tools /usr/local/bin/temporal-sql-tool /usr/local/bin/temporal-sql-tool
# The migrator's default --schema-dir.
COPY --from=admin-tools /etc/temporal/schema /etc/temporal/schema
COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --gid 10001 migrator \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin migrator \
    && temporal-sql-tool --help >/dev/null

# Numeric, so Kubernetes can verify runAsNonRoot without a runAsUser.
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["temporal-migrator"]
CMD ["--help"]
