# The Warden service image, used by docker-compose.yml (API replicas and worker alike).
# A CPU-only PyTorch wheel keeps the image small: point PIP_EXTRA_INDEX_URL at an index that
# serves one (`docker compose build --build-arg PIP_EXTRA_INDEX_URL=...`).
FROM python:3.11-slim

ARG PIP_EXTRA_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /srv/warden
COPY pyproject.toml constraints.txt README.md ./
COPY app ./app
COPY collectors ./collectors
COPY policies ./policies
COPY migrations ./migrations
COPY examples ./examples
RUN pip install -c constraints.txt .

# A fixed uid: files shared with the containers (the audit signing key) are given to it.
RUN useradd --system --uid 10001 --home /var/lib/warden warden && mkdir -p /var/lib/warden \
    && chown warden /var/lib/warden
USER warden
EXPOSE 8000
CMD ["warden", "serve", "--host", "0.0.0.0", "--port", "8000"]
