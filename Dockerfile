# Hugging Face Docker Space, or `docker run -p 7860:7860 <image>` anywhere.
# No compilers or headers: every pinned requirement installs from a wheel.
FROM python:3.11-slim

# The base image ships the standard library without bytecode (removed to keep it small),
# and the app's user cannot write it: compiled here, once, or every start compiles the
# ~190 standard-library modules the server imports.
# A Space runs the container as uid 1000, and Dev Mode wants the app owned by it.
RUN python -m compileall -q -j 0 /usr/local/lib/python3.11 && useradd -m -u 1000 user
# USER is numeric so that Kubernetes' runAsNonRoot can verify it, and it comes before
# WORKDIR so that WORKDIR creates $HOME/app owned by that user.
USER 1000
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FORWARDED_ALLOW_IPS="*"
WORKDIR $HOME/app

# Dependencies first, so that a code change does not reinstall them. pip compiles what it
# installs to bytecode (its default, whatever PYTHONDONTWRITEBYTECODE says).
COPY --chown=user requirements.txt .
RUN pip install --no-cache-dir --user --only-binary=:all: -r requirements.txt

COPY --chown=user . .
# Our own modules compiled at build time too: PYTHONDONTWRITEBYTECODE=1 means a start
# never writes bytecode, so without this each start would compile them all again.
# data/ is where SQLite goes when nothing else is configured, owned by the user, so that
# a volume mounted here (`docker run -v todo-data:/home/user/app/data …`) starts writable.
RUN python -m compileall -q -j 0 src alembic && mkdir -p data

# 7860 is app_port in README.md, and the image listens there whatever PORT says (a Space
# routes to app_port). `python -m src serve` (src/cli/serve.py) runs uvicorn on 0.0.0.0
# with proxy headers, WEB_CONCURRENCY
# workers, FORWARDED_ALLOW_IPS (which proxies to trust; any, by default, as behind a
# Space's proxy), the request head bounded in size and time (src/http/protocol.py) and
# no access log (the app logs every request itself). On SIGTERM uvicorn drains in-flight
# requests for up to 20 s, then the app's shutdown disposes the engine and checkpoints SQLite.
EXPOSE 7860
CMD ["python", "-m", "src", "serve", "--port", "7860"]
