"""Fuzz campaigns sharing one hypothesis example database on a real Redis server: a failure found by
one campaign is replayed first by the next one, wherever it runs. Also the database strings
(`scratch_grad.testing.database`), the SCRATCH_GRAD_DATABASE variable of the pytest profiles, and the
refusal of bad --database values before any work.

The Redis server: $SCRATCH_GRAD_TEST_REDIS (redis://HOST:PORT/DB; `.ci/run` starts a private server and
sets it; the test deletes scratch_grad's examples from that database), else a private redis-server
started here when the binary is installed, else the test is skipped, except under CI=true, where a
missing server fails it.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from scratch_grad.cli import main as cli
from scratch_grad.ops import REGISTRY
from scratch_grad.testing.database import (DATABASE_VARIABLE, KEY_PREFIX, DatabaseError, open_database,
                                           parse_redis_url)

REDIS_VARIABLE = "SCRATCH_GRAD_TEST_REDIS"


def _in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    url = os.environ.get(REDIS_VARIABLE)
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        message = (f"no Redis server: set {REDIS_VARIABLE}=redis://HOST:PORT/DB or install redis-server "
                   "(.ci/run installs and starts one)")
        if _in_ci():
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    port = _free_port()
    directory = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            try:
                open_database(url, check=True)
                break
            except DatabaseError:
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _saved_keys(url):
    import redis
    return list(redis.Redis.from_url(url).scan_iter(match=KEY_PREFIX + b"*"))


def _clear(url):
    """Delete scratch_grad's examples (and only those) from the test database."""
    import redis
    client = redis.Redis.from_url(url)
    for key in _saved_keys(url):
        client.delete(key)


def _campaign(url, reproducers, capsys):
    code = cli(["fuzz", "--import", "parity_tests.rare_bug_plugin", "--op", "logcosh_rarely_broken",
                "--max-ops", "3", "--minutes", "2", "--workers", "1", "--shrink-seconds", "3", "--stop-on-failure",
                "--database", url, "--reproducers", str(reproducers)])
    output = capsys.readouterr().out
    first = re.search(r"first failing example: number (\d+) of the campaign, ([\d.]+) s", output)
    reported = re.search(r"^FAILURE -> \S+\n(.*?)\n\n", output, re.MULTILINE | re.DOTALL)
    assert code == 1 and first and reported, output
    return int(first.group(1)), float(first.group(2)), reported.group(1)


def test_a_failure_found_by_one_campaign_is_replayed_first_by_the_next(redis_url, tmp_path, capsys):
    """The planted bug (a VJP wrong only when the input's last axis has length 4; a fresh campaign's
    first example rarely hits it) takes the first campaign a few examples to find;
    it saves the failure on the server, and the second campaign, sharing it, fails on its very first
    example, always: it replays what the database holds before drawing anything new (then it may
    shrink that failure further than the first campaign's few seconds did)."""
    _clear(redis_url)
    try:
        first, first_seconds, first_message = _campaign(redis_url, tmp_path / "first", capsys)
        assert _saved_keys(redis_url), "the first campaign saved its failure on the server"
        second, second_seconds, second_message = _campaign(redis_url, tmp_path / "second", capsys)
    finally:
        REGISTRY.pop("logcosh_rarely_broken", None)
        sys.modules.pop("parity_tests.rare_bug_plugin", None)
        _clear(redis_url)
    print(f"first failing example: campaign 1 at number {first} ({first_seconds:.1f} s), "
          f"campaign 2 at number {second} ({second_seconds:.1f} s)")
    assert second == 1, "the second campaign must replay the saved failure before drawing anything new"
    for message in (first_message, second_message):        # every graph contains the op
        assert "logcosh_rarely_broken" in message, message


@pytest.mark.parametrize("url, message", [
    ("redis://localhost:notaport/0", "port"),
    ("redis:///0", "no host"),
    ("redis://localhost:6379/zero", "not a number"),
    ("postgres://localhost/0", "unknown scheme"),
])
def test_bad_urls_are_named(url, message):
    with pytest.raises(DatabaseError, match=message):
        parse_redis_url(url)


def test_a_good_url_and_a_password_kept_out_of_messages():
    assert parse_redis_url("redis://10.0.0.5:6380/3") == ("10.0.0.5", 6380, 3)
    assert parse_redis_url("redis://db.example") == ("db.example", 6379, 0)
    with pytest.raises(DatabaseError) as error:
        open_database(f"redis://:hunter2@127.0.0.1:{_free_port()}/0", check=True)     # nothing listens there
    assert "cannot reach" in str(error.value) and "hunter2" not in str(error.value)


@pytest.mark.parametrize("database", ["redis://127.0.0.1:{port}/0", "redis://127.0.0.1:bad/0", "{file}"])
def test_fuzz_refuses_a_bad_database_before_any_work(database, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    database = database.format(port=_free_port(), file=tmp_path / "a_file")
    started = time.time()
    assert cli(["fuzz", "--minutes", "5", "--database", database]) == 2
    assert time.time() - started < 20
    assert "--database" in capsys.readouterr().err


def test_the_pytest_profiles_read_the_database_variable(tmp_path, monkeypatch, redis_url):
    from hypothesis import settings
    from hypothesis.database import DirectoryBasedExampleDatabase
    from hypothesis.extra.redis import RedisExampleDatabase

    from scratch_grad.testing.strategies import register_profiles
    try:
        monkeypatch.setenv("HYPOTHESIS_PROFILE", "dev")
        monkeypatch.setenv(DATABASE_VARIABLE, redis_url)
        assert register_profiles() == "dev"
        assert isinstance(settings.default.database, RedisExampleDatabase)
        assert isinstance(settings.get_profile("fuzz").database, RedisExampleDatabase)
        monkeypatch.setenv(DATABASE_VARIABLE, str(tmp_path / "examples"))
        register_profiles()
        assert isinstance(settings.default.database, DirectoryBasedExampleDatabase)
        assert str(settings.default.database.path) == str(tmp_path / "examples")
        monkeypatch.setenv(DATABASE_VARIABLE, "redis://localhost:notaport/0")
        with pytest.raises(DatabaseError, match=DATABASE_VARIABLE):
            register_profiles()
    finally:
        monkeypatch.undo()
        register_profiles()          # back to the session's profile
