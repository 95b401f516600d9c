"""glint's configuration: one msgspec Struct, decoded once from `GLINT_*` environment variables.

Every field below is read from the variable named `GLINT_` + the field name in upper case, e.g.
`database_url` from `GLINT_DATABASE_URL`. Values not set in the environment come from the
`stack.env` file that `glint stack up` writes (so `glint serve` finds the local stack), then from
the defaults here. A bad value stops start-up with a message that names the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

PositiveInt = Annotated[int, Meta(gt=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Everything glint reads from its environment."""

    # where the data lives
    database_url: str = "postgresql://glint@127.0.0.1:54329/glint"
    database_pool_min: PositiveInt = 2
    database_pool_max: PositiveInt = 20
    # read replicas: comma-separated URLs of streaming replicas for the reads that tolerate lag
    # (feed hydration, profiles, search, explore, message history); one more than
    # `replica_max_lag` seconds behind, or down, is skipped; a user's reads stay on the primary
    # for `read_your_writes_seconds` after each of their writes
    database_replica_urls: str = ""
    replica_max_lag: PositiveFloat = 5.0
    replica_check_seconds: PositiveFloat = 1.0
    read_your_writes_seconds: PositiveFloat = 5.0
    redis_url: str = "redis://127.0.0.1:63799/0"
    redis_timeout_seconds: PositiveFloat = 5.0  # connect and per-command socket timeout
    # a Redis Cluster (also chosen by a `redis+cluster://` URL): the URL names any one node
    redis_cluster: bool = False
    s3_endpoint: str = "http://127.0.0.1:8333"
    s3_public_endpoint: str = ""
    s3_region: str = "us-east-1"
    # S3 credentials: no default; empty means botocore's own chain (AWS_* variables, an instance role)
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "glint"
    s3_url_ttl: PositiveInt = 3600  # how long a media link (or a presigned URL) handed out lives
    # media links: the origin they point at, a front proxy that checks them before reading the
    # bucket (deploy/nginx.conf), e.g. https://media.example.com; empty: glint's own origin, where
    # glint checks them itself (the local stack and tests: no proxy there)
    media_url: str = ""
    # the secret media links are signed with, shared with that proxy (empty: derived from jwt_secret)
    media_link_secret: str = ""

    # events: "inline" hands committed outbox rows to the in-process consumers; "kafka" relays them
    events_transport: Literal["inline", "kafka"] = "inline"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = "glint."
    kafka_group_prefix: str = "glint-"
    outbox_batch: PositiveInt = 500
    outbox_poll_seconds: PositiveFloat = 1.0
    consumer_max_attempts: PositiveInt = 5
    consumer_retry_base_seconds: PositiveFloat = 0.2
    # dead letters an outage caused are replayed automatically: first after `dead_letter_replay_base_seconds`,
    # doubling per failed replay up to `dead_letter_replay_max_seconds`; due ones are looked for every
    # `dead_letter_poll_seconds`
    dead_letter_replay_base_seconds: PositiveFloat = 5.0
    dead_letter_replay_max_seconds: PositiveFloat = 300.0
    dead_letter_poll_seconds: PositiveFloat = 5.0

    # search
    search_backend: Literal["postgres", "elasticsearch"] = "postgres"
    elasticsearch_url: str = "http://127.0.0.1:9200"
    elasticsearch_index_prefix: str = "glint-"
    # search: make every Elasticsearch write searchable at once (tests; costly in production)
    elasticsearch_refresh: bool = False

    # the HTTP server
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8080
    consumer_port: Annotated[int, Meta(ge=0, le=65535)] = 8081
    shutdown_timeout: PositiveFloat = 10.0
    max_body_bytes: PositiveInt = 1024 * 1024
    cors_origins: str = ""
    gzip_min_bytes: PositiveInt = 1024
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = True
    # tracing: OTLP over HTTP to this collector (e.g. http://jaeger:4318); empty turns tracing off
    otlp_endpoint: str = ""
    # the built web client served at / (empty: web/dist beside the source), and the address people
    # open it at (the links in e-mails: /verify?token=..., /reset?token=...)
    web_dist: str = ""
    public_url: str = "http://127.0.0.1:8080"

    # auth: the HS256 key of access tokens (at least 32 bytes, no default: `glint stack up` writes a
    # random one into stack.env); a previous key still verifies tokens during a rotation
    jwt_secret: str = ""
    jwt_previous_secret: str = ""
    access_token_ttl: PositiveInt = 900
    refresh_token_ttl: PositiveInt = 30 * 24 * 3600

    # rate limits: requests per window
    rate_limit_per_hour: PositiveInt = 1000
    rate_limit_auth_per_minute: PositiveInt = 20
    rate_limit_anonymous_per_hour: PositiveInt = 1000

    # periodic jobs
    jobs_enabled: bool = True

    # accounts: outgoing e-mail goes through SMTP when smtp_host is set, otherwise into the
    # sent_emails table; how long an e-mail verification token lives
    smtp_host: str = ""
    smtp_port: Annotated[int, Meta(ge=1, le=65535)] = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True
    email_from: str = "glint <no-reply@glint.local>"
    email_verification_ttl: PositiveInt = 48 * 3600
    # account safety: how long a password-reset token lives; the key (32 bytes, base64) TOTP
    # secrets are encrypted under (empty: one derived from jwt_secret)
    password_reset_ttl: PositiveInt = 3600
    two_factor_key: Annotated[str, Meta(pattern=r"^$|^[A-Za-z0-9+/]{43}=$")] = ""
    # account deletion: days between the request and the erasure (a login cancels it), and how
    # often the erasure job (and the export expiry job) runs
    account_deletion_grace_days: PositiveInt = 30
    account_jobs_interval: PositiveFloat = 3600.0
    # data export: how long a built archive stays downloadable before the job removes it
    account_export_ttl: PositiveInt = 48 * 3600

    # media and posts: upload byte limits, the decoded-pixel limit checked from the
    # header, rendition widths (comma-separated), and how long an unattached upload lives
    media_image_max_bytes: PositiveInt = 20 * 1024 * 1024
    media_video_max_bytes: PositiveInt = 100 * 1024 * 1024
    media_max_pixels: PositiveInt = 50_000_000
    media_rendition_widths: Annotated[str, Meta(pattern=r"^[1-9][0-9]{0,3}(,[1-9][0-9]{0,3})*$")] = "1080,640,320,150"
    media_unattached_ttl: PositiveInt = 24 * 3600

    # realtime and direct messages: websocket frame limit, idle timeout (nothing at all
    # from the client, not even a pong), server ping interval, per-socket send queue (overflow
    # closes with 4408), frames handled at once per socket, typing cap per conversation, presence
    # key TTL / refresh throttle / presence.subscribe list cap
    ws_max_frame_bytes: PositiveInt = 64 * 1024
    ws_idle_timeout: PositiveFloat = 300.0
    ws_heartbeat: PositiveFloat = 25.0
    ws_send_queue: PositiveInt = 256
    ws_max_inflight: PositiveInt = 32
    typing_min_interval: PositiveFloat = 2.0
    presence_ttl: PositiveInt = 60
    presence_refresh: PositiveFloat = 20.0
    presence_subscribe_max: PositiveInt = 200
    # messages the bus cannot take are retried this long, then dropped with a `resync` hint to
    # their users once the bus is back
    bus_publish_give_up_seconds: PositiveFloat = 5.0

    # home feed and explore: timelines hold the newest `feed_cap` ids; posts fan out to followers
    # active in the last `feed_active_days`; authors with at least `celebrity_threshold` followers
    # are merged at read time instead; explore is recomputed every `explore_interval` seconds
    feed_cap: PositiveInt = 800
    feed_active_days: PositiveInt = 30
    celebrity_threshold: PositiveInt = 10_000
    explore_interval: PositiveFloat = 1800.0
    explore_window_hours: PositiveInt = 72

    # stories: how long a viewer's tray stays cached (writes drop it sooner), how long
    # after expiry a story's media is removed, and how often the story jobs run
    stories_tray_ttl: PositiveInt = 60
    stories_media_grace: PositiveInt = 3600
    stories_job_interval: PositiveFloat = 60.0

    # notifications: actors of one kind on one target within `notifications_group_window`
    # seconds of its first become one notification; ones untouched for `notifications_retention_days`
    # are deleted daily; push goes to `notifications_push_sink` ("table": rows in sent_pushes that
    # developers and tests read; "http": a Web Push-style POST to each device's endpoint, tried
    # `push_max_attempts` times backed off from `push_retry_base_seconds`, then dead-lettered)
    notifications_group_window: PositiveInt = 24 * 3600
    notifications_retention_days: PositiveInt = 90
    notifications_push_sink: Literal["table", "http"] = "table"
    push_timeout_seconds: PositiveFloat = 5.0
    push_max_attempts: PositiveInt = 4
    push_retry_base_seconds: PositiveFloat = 0.5


MIN_SECRET_BYTES = 32
SECRET_HINT = ("make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'` and set it, "
               "or run `glint stack up`, which writes a random one for the local stack")


def check_secrets(config: Config) -> None:
    """Refuse to run without a JWT secret of at least 32 bytes (there is no built-in one)."""
    for field in ("jwt_secret", "jwt_previous_secret"):
        value = getattr(config, field)
        if field == "jwt_previous_secret" and not value:
            continue
        if len(value.encode()) < MIN_SECRET_BYTES:
            state = "is not set" if not value else f"is shorter than {MIN_SECRET_BYTES} bytes"
            raise ConfigError(f"{env_name(field)} {state}: {SECRET_HINT}")


def env_name(field: str) -> str:
    """The environment variable that sets a Config field."""
    return "GLINT_" + field.upper()


def read_env_file(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines (the stack.env format); a missing file is empty."""
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


class ConfigError(Exception):
    """A configuration value is wrong; the message names the variable."""


def stack_dir() -> Path:
    """Where `glint stack up` keeps its data and writes stack.env."""
    return Path(os.environ.get("GLINT_STACK_DIR", ".glint")).resolve()


def load_config(environ: dict[str, str] | None = None, **overrides: object) -> Config:
    """Decode the Config from the environment (then stack.env), with keyword overrides on top."""
    if environ is None:
        merged = read_env_file(stack_dir() / "stack.env")
        merged.update(os.environ)
    else:
        merged = dict(environ)
    fields = set(Config.__struct_fields__)
    raw: dict[str, object] = {}
    for key, value in merged.items():
        if key.startswith("GLINT_") and key[6:].lower() in fields:
            raw[key[6:].lower()] = value
    raw.update(overrides)
    try:
        return msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        # msgspec says "... at `$.field_name`": name the variable instead
        if "`$." in message:
            field = message.split("`$.", 1)[1].split("`", 1)[0].split(".")[0].split("[")[0]
            message = message.split(" - at ", 1)[0] + f" (set by {env_name(field)})"
        raise ConfigError(message) from None
