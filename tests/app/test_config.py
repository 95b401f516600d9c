"""The config tree: every `GLINT_*` variable lands in its one leaf, and a bad value names its variable."""

import pytest

from app.config import BY_ENV, SETTINGS, Config, ConfigError, load_config


def test_every_variable_decodes_into_its_own_leaf():
    assert len(BY_ENV) == len(SETTINGS)
    for setting in SETTINGS:
        assert getattr(getattr(Config(), setting.section), setting.field) == setting.default
    config = load_config({"GLINT_REDIS_URL": "redis://cache:6379/1", "GLINT_REPLICA_MAX_LAG": "2.5",
                          "GLINT_EMAIL_FROM": "x <x@example.com>", "GLINT_NOT_A_SETTING": "1"}, feed_cap="7")
    assert (config.redis.url, config.database.replica_max_lag) == ("redis://cache:6379/1", 2.5)
    assert (config.email.sender, config.feed.cap) == ("x <x@example.com>", 7)


@pytest.mark.parametrize("env", ["GLINT_PORT", "GLINT_PUSH_MAX_ATTEMPTS", "GLINT_DATABASE_POOL_MIN"])
def test_a_bad_value_names_its_variable(env):
    with pytest.raises(ConfigError, match=f"set by {env}"):
        load_config({env: "-1"})


def test_an_override_must_be_a_setting():
    with pytest.raises(ConfigError, match="GLINT_FEED_CAPACITY"):
        load_config({}, feed_capacity=3)


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_the_writer_lanes_are_bounded_so_a_typo_cannot_open_a_connection_per_lane_by_the_thousand(value):
    with pytest.raises(ConfigError, match="set by GLINT_MESSAGE_WRITER_LANES"):
        load_config({"GLINT_MESSAGE_WRITER_LANES": value})
    assert load_config({"GLINT_MESSAGE_WRITER_LANES": "64"}).realtime.message_writer_lanes == 64
