# Hugging Face Docker Space, or `docker run -p 7860:7860 <image>` anywhere.
# No compilers or headers: every pinned requirement installs from a wheel.
FROM python:3.11-slim

# A Space runs the container as uid 1000, and Dev Mode wants the app owned by it.
# USER is numeric so that Kubernetes' runAsNonRoot can verify it, and it comes before
# WORKDIR so that WORKDIR creates $HOME/app owned by that user.
RUN useradd -m -u 1000 user
USER 1000
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FORWARDED_ALLOW_IPS="*"
WORKDIR $HOME/app

# Dependencies first, so that a code change does not reinstall them.
COPY --chown=user requirements.txt .
RUN pip install --no-cache-dir --user --only-binary=:all: -r requirements.txt

COPY --chown=user . .
# Where SQLite goes when nothing else is configured, owned by the user, so that a volume
# mounted here (`docker run -v todo-data:/home/user/app/data …`) starts out writable.
RUN mkdir -p data

# 7860 is app_port in README.md. On SIGTERM uvicorn drains in-flight requests, then the
# app's shutdown disposes the engine and checkpoints SQLite. The app logs every request
# itself, hence --no-access-log. Uvicorn reads WEB_CONCURRENCY (workers) and
# FORWARDED_ALLOW_IPS (which proxies to trust; any, by default, as behind a Space's proxy).
EXPOSE 7860
CMD ["uvicorn", "src.main:app", "--host", "0.0.0.0", "--port", "7860", "--proxy-headers", "--no-access-log", "--timeout-graceful-shutdown", "20"]
