# One image for every role: `actorq serve` (API + workers) by default, `actorq worker` too.
# examples/cluster/docker-compose.yml runs both on PostgreSQL; examples/kubernetes/ deploys them.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY actorq ./actorq
RUN pip install --no-cache-dir . && useradd --create-home actorq
USER actorq
WORKDIR /home/actorq
# Reachable from outside the container, so tokens are always required (only /health and
# /ready are open): create one with `actorq token create NAME --scope admin` on the database.
ENV ACTORQ_HOST=0.0.0.0 ACTORQ_PORT=8080 ACTORQ_AUTH=required
EXPOSE 8080
ENTRYPOINT ["actorq"]
CMD ["serve"]
