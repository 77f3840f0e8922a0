# One image for every TonerWatch service: `tonerwatch serve <service>` picks which.
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY shared ./shared
COPY services ./services
COPY src ./src
RUN uv sync --frozen --no-dev --all-packages --no-editable

FROM python:3.11-slim
RUN useradd --system --uid 10001 tonerwatch
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 TONERWATCH_LOG_FORMAT=json
USER 10001
ENTRYPOINT ["tonerwatch"]
CMD ["serve", "api"]
