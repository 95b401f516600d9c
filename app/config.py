"""glint's configuration: a tree of msgspec Structs, decoded once from `GLINT_*` environment variables.

Each section is a small Struct; each leaf is read from one variable: `GLINT_` + the section's
`prefix` + the field name, in upper case (`redis.url` from `GLINT_REDIS_URL`), unless the field
names its variable (`Meta(extra={"env": ...})`). Values not set in the environment come from the
`stack.env` file that `glint stack up` writes (so `glint serve` finds the local stack), then from
the defaults here. A bad value stops start-up with a message that names the variable. The
README's settings table is generated from this tree (`python -m app.config`), so the variable
names, defaults and notes live here alone.
"""

from __future__ import annotations

import os
import sys
import typing
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

from realtime.settings import Settings

PositiveInt = Annotated[int, Meta(gt=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]
Port = Annotated[int, Meta(ge=0, le=65535)]


def env(name: str, note: str = "", shown: str = "") -> Meta:
    """A leaf whose variable is `GLINT_` + name (not the section prefix + field name); `note` and
    `shown` (a default to print instead of the value) are for the README table."""
    return Meta(description=note or None, extra={"env": name, "shown": shown})


def doc(note: str = "", shown: str = "") -> Meta:
    """A README note for a leaf, and a default to print instead of the value."""
    return Meta(description=note or None, extra={"shown": shown})


class Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A group of settings whose variables share a prefix."""

    prefix: ClassVar[str] = ""
    env_names: ClassVar[dict[str, str]] = {}  # field -> variable without GLINT_, where not prefix + field


class DatabaseConfig(Section):
    """Where the data lives: PostgreSQL. Read replicas: comma-separated URLs of streaming replicas
    for the reads that tolerate lag (feed hydration, profiles, search, explore, message history);
    one more than `GLINT_REPLICA_MAX_LAG` seconds behind (measured every
    `GLINT_REPLICA_CHECK_SECONDS`), or down, is skipped; a user's reads stay on the primary for
    `GLINT_READ_YOUR_WRITES_SECONDS` after each of their writes"""

    prefix: ClassVar[str] = "database_"
    url: str = "postgresql://glint@127.0.0.1:54329/glint"
    pool_min: PositiveInt = 2
    pool_max: Annotated[PositiveInt, doc("each `glint serve` also opens up to 2 more of its own, for the message writer's batches")] = 20
    replica_urls: Annotated[str, doc("none: every read goes to the primary")] = ""
    replica_max_lag: Annotated[PositiveFloat, env("replica_max_lag")] = 5.0
    replica_check_seconds: Annotated[PositiveFloat, env("replica_check_seconds")] = 1.0
    read_your_writes_seconds: Annotated[PositiveFloat, env("read_your_writes_seconds")] = 5.0


class RedisConfig(Section):
    """Where the data lives: Redis (Valkey)"""

    prefix: ClassVar[str] = "redis_"
    url: str = "redis://127.0.0.1:63799/0"
    timeout_seconds: Annotated[PositiveFloat, doc("connect and per-command socket timeout")] = 5.0
    # a Redis Cluster: the URL names any one node (a `redis+cluster://` URL chooses it as well)
    cluster: Annotated[bool, doc("`true`: `GLINT_REDIS_URL` names one node of a Redis Cluster; a "
                                 "`redis+cluster://` URL does the same")] = False


class S3Config(Section):
    """Where the data lives: S3 (credentials have no default; empty means botocore's own chain:
    AWS_* variables, an instance role)"""

    prefix: ClassVar[str] = "s3_"
    endpoint: str = "http://127.0.0.1:8333"
    public_endpoint: str = ""
    region: str = "us-east-1"
    access_key: Annotated[str, doc(shown="none (`glint stack up` writes a random one; empty uses botocore's "
                                         "credential chain)")] = ""
    secret_key: Annotated[str, doc(shown="none (as above)")] = ""
    bucket: str = "glint"
    url_ttl: Annotated[PositiveInt, doc("how long a media link, or a presigned URL, lives")] = 3600


class EventsConfig(Section):
    """Events: "inline" hands committed outbox rows to the in-process consumers; "kafka" relays them"""

    transport: Annotated[Literal["inline", "kafka"], env("events_transport")] = "inline"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = "glint."
    kafka_group_prefix: str = "glint-"
    outbox_batch: PositiveInt = 500
    outbox_poll_seconds: PositiveFloat = 1.0
    consumer_max_attempts: PositiveInt = 5
    consumer_retry_base_seconds: PositiveFloat = 0.2
    # dead letters an outage caused are replayed automatically: first after the base, doubling per
    # failed replay up to the max; due ones are looked for every poll
    dead_letter_replay_base_seconds: Annotated[PositiveFloat, doc(
        "a dead letter an outage caused is replayed first after this, doubling per failed replay")] = 5.0
    dead_letter_replay_max_seconds: PositiveFloat = 300.0
    dead_letter_poll_seconds: PositiveFloat = 5.0


class SearchConfig(Section):
    """Search"""

    backend: Annotated[Literal["postgres", "elasticsearch"], env("search_backend")] = "postgres"
    elasticsearch_url: str = "http://127.0.0.1:9200"
    elasticsearch_index_prefix: str = "glint-"
    elasticsearch_refresh: Annotated[bool, doc(
        "make every Elasticsearch write searchable at once: tests; costly in production")] = False


class ServerConfig(Section):
    """The HTTP server"""

    host: str = "127.0.0.1"
    port: Port = 8080
    consumer_port: Port = 8081
    shutdown_timeout: PositiveFloat = 10.0
    max_body_bytes: PositiveInt = 1024 * 1024
    body_timeout_seconds: Annotated[PositiveFloat, doc(
        "how long a request body may take to arrive (an upload: each of its chunks); past it the request "
        "is a 408 and its connection is closed")] = 30.0
    cors_origins: str = ""
    gzip_min_bytes: PositiveInt = 1024
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], doc(
        "glint's own loggers; other libraries log at WARNING unless this is `DEBUG`; a repeated warning "
        "is one line per 10 s with a `repeated` count")] = "INFO"
    access_log: bool = True
    web_dist: Annotated[str, doc("the built web client: `web/dist` beside the source")] = ""
    public_url: Annotated[str, doc("where people open glint: the links in e-mails")] = "http://127.0.0.1:8080"


class TracingConfig(Section):
    """Tracing: OTLP over HTTP to this collector (e.g. `http://jaeger:4318`); empty turns tracing off"""

    otlp_endpoint: str = ""


class AuthConfig(Section):
    """Auth: the HS256 key of access tokens, a previous key that still verifies tokens during a
    rotation, token lifetimes, how long a password-reset token lives, and the key (32 bytes, base64)
    TOTP secrets are encrypted under (empty: one derived from the JWT secret)"""

    jwt_secret: Annotated[str, doc(shown=(
        "none: required, at least 32 bytes (`glint stack up` writes a random one into `.glint/stack.env`; "
        "make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`)"))] = ""
    jwt_previous_secret: Annotated[str, doc(
        "during a rotation: tokens signed with it still verify; new ones use `GLINT_JWT_SECRET`")] = ""
    access_token_ttl: PositiveInt = 900
    refresh_token_ttl: PositiveInt = 30 * 24 * 3600
    password_reset_ttl: PositiveInt = 3600
    two_factor_key: Annotated[str, Meta(pattern=r"^$|^[A-Za-z0-9+/]{43}=$")] = ""


class RateLimitConfig(Section):
    """Rate limits: requests per window"""

    prefix: ClassVar[str] = "rate_limit_"
    per_hour: PositiveInt = 1000
    auth_per_minute: PositiveInt = 20
    anonymous_per_hour: PositiveInt = 1000


class JobsConfig(Section):
    """Periodic jobs"""

    prefix: ClassVar[str] = "jobs_"
    enabled: bool = True


class EmailConfig(Section):
    """E-mail: outgoing mail goes through SMTP when `GLINT_SMTP_HOST` is set, otherwise into the
    sent_emails table; how long an e-mail verification token lives"""

    prefix: ClassVar[str] = "smtp_"
    host: str = ""
    port: Annotated[int, Meta(ge=1, le=65535)] = 587
    username: str = ""
    password: str = ""
    starttls: bool = True
    sender: Annotated[str, env("email_from")] = "glint <no-reply@glint.local>"
    verification_ttl: Annotated[PositiveInt, env("email_verification_ttl")] = 48 * 3600


class AccountsConfig(Section):
    """Accounts: days between a deletion request and the erasure (a login cancels it), how often the
    erasure job (and the export expiry job) runs, and how long a built data export stays
    downloadable before the job removes it"""

    prefix: ClassVar[str] = "account_"
    deletion_grace_days: PositiveInt = 30
    jobs_interval: PositiveFloat = 3600.0
    export_ttl: PositiveInt = 48 * 3600


class MediaConfig(Section):
    """Media and posts: upload byte limits, the decoded-pixel limit checked from the header,
    rendition widths (comma-separated), how long an unattached upload lives, and where media links
    point and the key they are signed with"""

    prefix: ClassVar[str] = "media_"
    image_max_bytes: PositiveInt = 20 * 1024 * 1024
    video_max_bytes: PositiveInt = 100 * 1024 * 1024
    max_pixels: PositiveInt = 50_000_000
    rendition_widths: Annotated[str, Meta(pattern=r"^[1-9][0-9]{0,3}(,[1-9][0-9]{0,3})*$")] = "1080,640,320,150"
    unattached_ttl: PositiveInt = 24 * 3600
    # media links point at `url`, a front proxy that checks them before reading the bucket
    # (deploy/nginx.conf); empty: glint's own origin, where glint checks them itself
    url: Annotated[str, doc(
        "the media host media links point at, e.g. `https://media.example.com`: a front proxy that checks them; "
        "empty: glint's own origin checks them, for the local stack and tests")] = ""
    link_secret: Annotated[str, doc(
        "the key media links are signed with, shared with that proxy; empty: derived from `GLINT_JWT_SECRET`")] = ""


class RealtimeConfig(Settings, Section):
    """Realtime and direct messages: the gateway's settings (realtime/settings.py), then the typing
    cap per conversation and the presence.subscribe list cap"""

    env_names: ClassVar[dict[str, str]] = {
        "max_frame_bytes": "ws_max_frame_bytes", "idle_timeout": "ws_idle_timeout", "heartbeat": "ws_heartbeat",
        "send_queue": "ws_send_queue", "max_inflight": "ws_max_inflight",
        "publish_give_up": "bus_publish_give_up_seconds",
    }
    typing_min_interval: PositiveFloat = 2.0
    presence_subscribe_max: PositiveInt = 200
    message_writer_lanes: Annotated[PositiveInt, Meta(le=64), doc(
        "message writer queues per process, 1 to 64 (by conversation id), each committing its batches on a "
        "connection of its own: more let one conversation's held lock stall fewer others, but batches "
        "of two processes' lanes wait on each other's row locks; one is fastest on 2 cores")] = 1


class FeedConfig(Section):
    """Home feed and explore: timelines hold the newest `GLINT_FEED_CAP` ids; posts fan out to
    followers active in the last `GLINT_FEED_ACTIVE_DAYS`; authors with at least
    `GLINT_CELEBRITY_THRESHOLD` followers are merged at read time instead; explore is recomputed
    every `GLINT_EXPLORE_INTERVAL` seconds"""

    prefix: ClassVar[str] = "feed_"
    cap: PositiveInt = 800
    active_days: PositiveInt = 30
    celebrity_threshold: Annotated[PositiveInt, env("celebrity_threshold"), doc(
        "a server started with a lower value lists the accounts already past it before it serves; "
        "see migration 0020")] = 10_000
    explore_interval: Annotated[PositiveFloat, env("explore_interval", (
        "explore ranks posts by their likes and comments of the last `GLINT_EXPLORE_WINDOW_HOURS`; "
        "while it has none ranked, as on a fresh install, it shows the newest public posts at once "
        "instead of waiting for the next run"))] = 1800.0
    explore_window_hours: Annotated[PositiveInt, env("explore_window_hours")] = 72


class StoriesConfig(Section):
    """Stories: how long a viewer's tray stays cached (writes drop it sooner), how long after expiry
    a story's media is removed, and how often the story jobs run"""

    prefix: ClassVar[str] = "stories_"
    tray_ttl: PositiveInt = 60
    media_grace: PositiveInt = 3600
    job_interval: PositiveFloat = 60.0


class NotificationsConfig(Section):
    """Notifications: actors of one kind on one target within `GLINT_NOTIFICATIONS_GROUP_WINDOW`
    seconds of its first become one notification; ones untouched for
    `GLINT_NOTIFICATIONS_RETENTION_DAYS` are deleted daily; push goes to
    `GLINT_NOTIFICATIONS_PUSH_SINK` ("table": rows in sent_pushes that developers and tests read;
    "http": a Web Push-style POST to each device's endpoint, tried `GLINT_PUSH_MAX_ATTEMPTS` times
    backed off from `GLINT_PUSH_RETRY_BASE_SECONDS`, then dead-lettered)"""

    prefix: ClassVar[str] = "notifications_"
    group_window: PositiveInt = 24 * 3600
    retention_days: PositiveInt = 90
    push_sink: Literal["table", "http"] = "table"
    push_timeout_seconds: Annotated[PositiveFloat, env("push_timeout_seconds")] = 5.0
    push_max_attempts: Annotated[PositiveInt, env("push_max_attempts")] = 4
    push_retry_base_seconds: Annotated[PositiveFloat, env("push_retry_base_seconds")] = 0.5


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Everything glint reads from its environment, one section per concern."""

    database: DatabaseConfig = DatabaseConfig()
    redis: RedisConfig = RedisConfig()
    s3: S3Config = S3Config()
    events: EventsConfig = EventsConfig()
    search: SearchConfig = SearchConfig()
    server: ServerConfig = ServerConfig()
    tracing: TracingConfig = TracingConfig()
    auth: AuthConfig = AuthConfig()
    rate_limits: RateLimitConfig = RateLimitConfig()
    jobs: JobsConfig = JobsConfig()
    email: EmailConfig = EmailConfig()
    accounts: AccountsConfig = AccountsConfig()
    media: MediaConfig = MediaConfig()
    realtime: RealtimeConfig = RealtimeConfig()
    feed: FeedConfig = FeedConfig()
    stories: StoriesConfig = StoriesConfig()
    notifications: NotificationsConfig = NotificationsConfig()


class Setting(msgspec.Struct, frozen=True):
    """One leaf of the tree: its variable, where it sits, its default and its README note."""

    env: str  # GLINT_...
    section: str
    field: str
    default: object
    note: str
    shown: str  # printed instead of the default in the README, if set


def _leaf_meta(hint: object) -> tuple[str, str, str]:
    """The (variable suffix, note, shown default) a field's annotations give, empty when unset."""
    name = note = shown = ""
    while typing.get_origin(hint) is Annotated:
        for meta in getattr(hint, "__metadata__", ()):
            if isinstance(meta, Meta):
                name = (meta.extra or {}).get("env", name)
                shown = (meta.extra or {}).get("shown", shown)
                note = meta.description or note
        hint = typing.get_args(hint)[0]
    return name, note, shown


def _settings() -> list[Setting]:
    found = []
    for section in msgspec.structs.fields(Config):
        cls = section.type
        hints = typing.get_type_hints(cls, include_extras=True)
        for field in msgspec.structs.fields(cls):
            name, note, shown = _leaf_meta(hints[field.name])
            name = name or cls.env_names.get(field.name, "")
            found.append(Setting(env="GLINT_" + (name or cls.prefix + field.name).upper(), section=section.name,
                                 field=field.name, default=field.default, note=note, shown=shown))
    return found


SETTINGS: tuple[Setting, ...] = tuple(_settings())
BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}
BY_PATH: dict[tuple[str, str], Setting] = {(s.section, s.field): s for s in SETTINGS}

MIN_SECRET_BYTES = 32
SECRET_HINT = ("make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'` and set it, "
               "or run `glint stack up`, which writes a random one for the local stack")


def check_secrets(config: Config) -> None:
    """Refuse to run without a JWT secret of at least 32 bytes (there is no built-in one)."""
    for field in ("jwt_secret", "jwt_previous_secret"):
        value = getattr(config.auth, field)
        if field == "jwt_previous_secret" and not value:
            continue
        if len(value.encode()) < MIN_SECRET_BYTES:
            state = "is not set" if not value else f"is shorter than {MIN_SECRET_BYTES} bytes"
            raise ConfigError(f"{BY_PATH['auth', field].env} {state}: {SECRET_HINT}")


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
    """Decode the Config from the environment (then stack.env), with overrides on top: an override is
    named by its variable without `GLINT_`, in lower case (`redis_url=` for `GLINT_REDIS_URL`)."""
    if environ is None:
        merged: dict[str, object] = dict(read_env_file(stack_dir() / "stack.env"))
        merged.update(os.environ)
    else:
        merged = dict(environ)
    for key, value in overrides.items():
        if "GLINT_" + key.upper() not in BY_ENV:
            raise ConfigError(f"there is no setting GLINT_{key.upper()}")
        merged["GLINT_" + key.upper()] = value
    raw: dict[str, dict[str, object]] = {}
    for key, value in merged.items():
        setting = BY_ENV.get(key)
        if setting is not None:
            raw.setdefault(setting.section, {})[setting.field] = value
    try:
        return msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        # msgspec says "... at `$.section.field`": name the variable instead
        if "`$." in message:
            path = message.split("`$.", 1)[1].split("`", 1)[0].split("[")[0].split(".")
            setting = BY_PATH.get((path[0], path[1])) if len(path) > 1 else None
            if setting is not None:
                message = message.split(" - at ", 1)[0] + f" (set by {setting.env})"
        raise ConfigError(message) from None


README_BEGIN = "<!-- settings: generated from app/config.py by `python -m app.config`; edit there -->"
README_END = "<!-- end of settings -->"


def _shown(setting: Setting) -> str:
    if setting.shown:
        return setting.shown
    value = setting.default
    text = f"`{value}`" if value != "" else '`""`'
    return f"{text} ({setting.note})" if setting.note else text


def readme_settings() -> str:
    """The README's settings tables: one per section, the section's docstring as its heading."""
    lines = [README_BEGIN]
    for section in msgspec.structs.fields(Config):
        heading = " ".join((section.type.__doc__ or section.name).split())
        lines += ["", f"**{heading}**", "", "| variable | default |", "| --- | --- |"]
        lines += [f"| `{s.env}` | {_shown(s)} |" for s in SETTINGS if s.section == section.name]
    lines += ["", README_END]
    return "\n".join(lines)


def rewrite_readme(path: Path) -> bool:
    """Put the generated settings tables between the README's markers; True if the file changed."""
    text = path.read_text()
    head, _, rest = text.partition(README_BEGIN)
    _, _, tail = rest.partition(README_END)
    new = head + readme_settings() + tail
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    changed = rewrite_readme(Path(__file__).resolve().parents[1] / "README.md")
    print("README.md settings " + ("rewritten" if changed else "already current"), file=sys.stderr)
