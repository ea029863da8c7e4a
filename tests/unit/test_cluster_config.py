"""How the contract's variables become the one URL the clients are made from, and the
clear refusals of what cannot work. Pure logic: no server needed (the clusters themselves
are tested in test_cluster.py and test_sentinel.py, and so is ``serve`` refusing a bad
configuration at start)."""

from __future__ import annotations

import pytest

from broadcaster.core.connection import parse_target
from broadcaster.core.settings import RedisSettings


def engine(**env: str) -> str | None:
    return RedisSettings(**env).engine_url()  # type: ignore[arg-type]


def test_cluster_url_names_every_node() -> None:
    url = engine(REDIS_CLUSTER="true", REDIS_URL="redis://:pw@10.0.0.1:7000,10.0.0.2:7001")
    assert url == "redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001"
    target = parse_target(url)
    assert target is not None and target.kind == "cluster"
    assert target.nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert target.options["password"] == "pw"


def test_cluster_over_tls_keeps_its_options() -> None:
    url = engine(REDIS_CLUSTER="true", REDIS_URL="rediss://h:6379?ssl_cert_reqs=none")
    target = parse_target(url or "")
    assert target is not None
    assert target.options["ssl"] is True
    assert target.options["ssl_cert_reqs"] == "none"


def test_sentinel_url_takes_credentials_and_db_from_redis_url() -> None:
    url = engine(
        REDIS_SENTINELS="s1:26379,s2:26380",
        REDIS_SENTINEL_SERVICE="main",
        REDIS_URL="redis://app:secret@ignored/3",
    )
    assert url == "redis+sentinel://app:secret@s1:26379,s2:26380/main/3"
    target = parse_target(url)
    assert target is not None and target.kind == "sentinel"
    assert target.service == "main"
    assert target.nodes == [("s1", 26379), ("s2", 26380)]
    assert (target.options["username"], target.options["password"]) == ("app", "secret")
    assert target.options["db"] == 3


def test_sentinel_without_redis_url() -> None:
    url = engine(REDIS_SENTINELS="127.0.0.1:26379", REDIS_SENTINEL_SERVICE="svc")
    assert url == "redis+sentinel://127.0.0.1:26379/svc"


def test_plain_url_is_left_alone() -> None:
    assert engine(REDIS_URL="unix:///run/redis.sock") == "unix:///run/redis.sock"
    assert parse_target("redis://localhost:6379/0") is None
    assert engine() is None  # the embedded Redis


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_CLUSTER": "true"}, "needs REDIS_URL"),
        ({"REDIS_SENTINELS": "s:1"}, "REDIS_SENTINEL_SERVICE"),
        ({"REDIS_CLUSTER": "true", "REDIS_SENTINELS": "s:1"}, "not both"),
        ({"REDIS_CLUSTER": "true", "REDIS_URL": "unix:///x.sock"}, "redis:// or rediss://"),
        ({"REDIS_CLUSTER": "true", "REDIS_URL": "redis://h:1/2"}, "only database 0"),
        ({"REDIS_CLUSTER": "true", "REDIS_URL": "redis://h"}, "host:port"),
        ({"REDIS_URL": "redis+shard://h:1"}, "unknown Redis URL scheme"),
        ({"REDIS_URL": "nonsense://h:1"}, "REDIS_URL: .*redis://, rediss://, unix://"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL: .*redis://, rediss://, unix://"),
    ],
)
def test_bad_configuration_is_refused_with_a_reason(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        engine(**env)
