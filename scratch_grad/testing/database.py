"""Where hypothesis keeps the failing examples it found: a directory (the default) or a Redis server
shared by processes on many machines.

    scratch-grad fuzz --database .hypothesis/examples            # one machine (a directory)
    scratch-grad fuzz --database redis://10.0.0.5:6379/0          # every machine that reaches the server
    SCRATCH_GRAD_DATABASE=redis://10.0.0.5:6379/0 HYPOTHESIS_PROFILE=dev pytest parity_tests

A failure saved by one process is replayed first by every later run that opens the same database
(hypothesis' `Phase.reuse`), so a campaign over several machines shares what each one finds.
`open_database` is the one place that reads such a string (the fuzz CLI, the pytest profiles and
any later plugin option use it). Importing this module needs neither hypothesis nor redis.
"""
import os
from urllib.parse import urlsplit

DATABASE_VARIABLE = "SCRATCH_GRAD_DATABASE"
REDIS_SCHEMES = ("redis", "rediss", "unix")
KEY_PREFIX = b"scratch-grad-example:"    # keeps our examples apart from other projects' on a shared server
CONNECT_TIMEOUT = 3.0                    # seconds to reach the server when it is checked
SOCKET_TIMEOUT = 30.0                    # a server that stops answering fails the run instead of hanging it


class DatabaseError(ValueError):
    """A database string that cannot be used: the message says why and what is expected."""


def is_url(spec):
    return "://" in str(spec)


def describe(spec):
    """The database for messages, without a password a URL may carry."""
    if not is_url(spec):
        return str(spec)
    parts = urlsplit(spec)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return spec


def parse_redis_url(url):
    """Check redis://[:PASSWORD@]HOST[:PORT][/DB] (also rediss:// and unix://PATH); returns
    (host or socket path, port, db). Raises DatabaseError naming what is wrong."""
    expected = "expected redis://HOST:PORT/DB, e.g. redis://127.0.0.1:6379/0"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in REDIS_SCHEMES:
        raise DatabaseError(f"{describe(url)}: unknown scheme {parts.scheme!r}; give a directory or {expected}")
    if scheme == "unix":
        if not parts.path:
            raise DatabaseError(f"{describe(url)}: no socket path; expected unix:///path/to/redis.sock")
        return parts.path, None, 0
    try:
        port = parts.port
    except ValueError:
        raise DatabaseError(f"{describe(url)}: the port is not a number from 0 to 65535; {expected}") from None
    if not parts.hostname:
        raise DatabaseError(f"{describe(url)}: no host; {expected}")
    db_text = parts.path.lstrip("/")
    if db_text and not db_text.isdigit():
        raise DatabaseError(f"{describe(url)}: the database {db_text!r} is not a number; {expected}")
    return parts.hostname, port or 6379, int(db_text or 0)


def open_database(spec, check=True):
    """A hypothesis example database for `spec`: a redis:// URL (hypothesis.extra.redis, needs the
    `redis` package) or a directory path. check=True also reaches the server (or creates the
    directory) now, so that a wrong address fails before any work, with a DatabaseError."""
    spec = os.fspath(spec)
    if is_url(spec):
        parse_redis_url(spec)
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError as exc:
            raise DatabaseError(f"{describe(spec)}: a Redis database needs the redis package ({exc}): "
                                "pip install redis, or pip install 'scratch_grad[test]'") from None
        client = redis.Redis.from_url(spec, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT)
        if check:
            try:
                client.ping()
            except redis.exceptions.RedisError as exc:
                raise DatabaseError(f"cannot reach the Redis server at {describe(spec)}: {exc}") from None
        return RedisExampleDatabase(client, key_prefix=KEY_PREFIX)
    from hypothesis.database import DirectoryBasedExampleDatabase
    if os.path.exists(spec) and not os.path.isdir(spec):
        raise DatabaseError(f"{spec}: exists and is not a directory")
    if check:
        try:
            os.makedirs(spec, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"{spec}: cannot create the directory ({exc.strerror})") from None
    return DirectoryBasedExampleDatabase(spec)


def database_from_environment(check=True):
    """The database SCRATCH_GRAD_DATABASE names (None when it is unset or empty)."""
    spec = os.environ.get(DATABASE_VARIABLE, "").strip()
    if not spec:
        return None
    try:
        return open_database(spec, check=check)
    except DatabaseError as exc:
        raise DatabaseError(f"{DATABASE_VARIABLE}: {exc}") from None
