# syntax=docker/dockerfile:1
#
# temporal-migrator image: the migrator on Debian's own python3, with temporal-sql-tool and the vendor schema
# tree of the Temporal release the migrator is tested against.
#
#   docker build -t temporal-migrator:dev .          (GitHub Actions builds this, on the real bases)
#   bash scripts/image-test.sh                         (CI here builds this same file, on local bases)
#
# Why these bases:
# - DEBIAN_BASE, debian:bookworm-slim: Debian 12's python3 (3.11) is the interpreter scripts/test.sh and CI test
#   with (/usr/bin/python3), so the image ships the Python that was tested, and every package comes from Debian.
#   That is also what lets CI here, which reaches no image registry, build this file unchanged: it passes a base
#   made locally from Debian 12 with debootstrap (same release, same paths).
# - ADMIN_TOOLS_IMAGE, temporalio/admin-tools: the vendor's own temporal-sql-tool and schema tree of the release,
#   at the vendor's paths (/usr/local/bin/temporal-sql-tool, /etc/temporal/schema). The tool is a static Go
#   binary, so it runs on Debian. CI here passes a local image holding the same release's tool, built with
#   `go install` on Debian 12, and the release module's schema tree, at those same paths.
# The tag must be the admin-tools tag of TEMPORAL_VERSION (ADMIN_TOOLS_TAG in pins.env; a test checks it).

ARG DEBIAN_BASE=debian:bookworm-slim
ARG ADMIN_TOOLS_IMAGE=temporalio/admin-tools:1.32.2

# --- temporal-sql-tool and /etc/temporal/schema -------------------------------------------------------------
FROM ${ADMIN_TOOLS_IMAGE} AS admin-tools

# --- the migrator, installed into a virtualenv from the hashed lock files -----------------------------------
FROM ${DEBIAN_BASE} AS build
# Debian's packages are not version-pinned: a stable release replaces them only with security and point fixes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/runtime.txt requirements/build.txt requirements/
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes -r requirements/build.txt \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY migrator ./migrator
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/wheel . \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps /tmp/wheel/*.whl \
    && /opt/venv/bin/temporal-migrator --version

# --- final image --------------------------------------------------------------------------------------------
FROM ${DEBIAN_BASE}
ARG ADMIN_TOOLS_IMAGE
LABEL org.opencontainers.image.title="temporal-migrator" \
      org.opencontainers.image.description="Brings Temporal's PostgreSQL schemas to the target version safely" \
      io.temporal.admin-tools.image="${ADMIN_TOOLS_IMAGE}"

# python3 for the virtualenv (its interpreter is a link to /usr/bin/python3), CA certificates for --tls.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 migrator \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin migrator

COPY --from=admin-tools /usr/local/bin/temporal-sql-tool /usr/local/bin/temporal-sql-tool
# The migrator's default --schema-dir.
COPY --from=admin-tools /etc/temporal/schema /etc/temporal/schema
COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN temporal-sql-tool --help >/dev/null && temporal-migrator --version

# Numeric, so Kubernetes can verify runAsNonRoot without a runAsUser.
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["temporal-migrator"]
CMD ["--help"]
