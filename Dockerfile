FROM apache/airflow:3.3.2-python3.11

# The apache/airflow image refuses `pip install` as root: dependencies go into the
# airflow user's environment. Pinning apache-airflow to the image's own version keeps
# a requirement from silently upgrading or downgrading Airflow.
USER airflow
WORKDIR /opt/airflow

COPY --chown=airflow:0 requirements.txt ./
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r requirements.txt

# Editable install: docker-compose.yml bind-mounts ./include over /opt/airflow/include,
# so the running stack imports the mounted source rather than a stale copy.
# README.md too: pyproject.toml names it as the package's readme.
COPY --chown=airflow:0 pyproject.toml README.md ./
COPY --chown=airflow:0 include/ ./include/
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -e . \
    && mkdir -p /opt/airflow/staging
