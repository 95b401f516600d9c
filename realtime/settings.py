"""The gateway's settings, in a module of their own so that app/config.py can make them its
realtime section without importing the gateway's dependencies."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """The gateway's knobs: the realtime section of app/config.py is one of these, read from
    `GLINT_WS_*` and friends. Frame size limit, idle timeout (nothing at all from the client, not
    even a pong), server ping interval, per-socket send queue (overflow closes with 4408), frames
    handled at once per socket, presence key TTL and refresh throttle, and how long messages the
    bus cannot take are retried."""

    max_frame_bytes: Annotated[int, Meta(gt=0)] = 64 * 1024
    idle_timeout: Annotated[float, Meta(gt=0)] = 300.0
    heartbeat: Annotated[float, Meta(gt=0)] = 25.0
    send_queue: Annotated[int, Meta(gt=0)] = 256
    max_inflight: Annotated[int, Meta(gt=0)] = 32
    presence_ttl: Annotated[int, Meta(gt=0)] = 60
    presence_refresh: Annotated[float, Meta(gt=0)] = 20.0
    publish_give_up: Annotated[float, Meta(
        gt=0, description="messages the bus cannot take are retried this long, then their users get `resync`")] = 5.0
