"""The HTTP push sink calls only public addresses: a device endpoint is a client's input."""

from __future__ import annotations

import socket

from storage.sinks import HttpPushSink, is_public
from tests.support import make_users, start_endpoint


async def test_the_http_push_sink_refuses_loopback_private_and_link_local_targets(pool):
    (user,) = await make_users(pool, 1)
    runner, base, seen = await start_endpoint({"x": [201]})
    port = base.split(":")[2].split("/")[0]
    targets = [base + "x", f"http://localhost:{port}/push/x", f"http://[::1]:{port}/push/x",
               "http://10.1.2.3/push", "http://192.168.0.1/push", "http://169.254.169.254/latest/meta-data/",
               f"http://[::ffff:127.0.0.1]:{port}/push/x", "file:///etc/passwd", "http://0.0.0.0/"]
    hostname = socket.gethostname()
    try:
        if not any(is_public(a[4][0]) for a in socket.getaddrinfo(hostname, None)):
            targets.append(f"http://{hostname}:{port}/push/x")  # a name resolving to a private address
    except OSError:
        pass
    sink = HttpPushSink(pool, timeout=2, max_attempts=1)
    try:
        for endpoint in targets:
            device = await pool.fetchrow(
                "INSERT INTO push_devices (user_id, endpoint, platform) VALUES ($1, $2, 'web') RETURNING *",
                user, endpoint)
            await sink.send(device, {"title": "hi"})
    finally:
        await runner.cleanup()
    assert seen == {}
    errors = [r["error"] for r in await pool.fetch("SELECT error FROM push_dead_letters ORDER BY id")]
    assert len(errors) == len(targets)
    assert all("refused" in e or "public address" in e for e in errors), errors
    assert is_public("93.184.216.34") and not is_public("127.0.0.1") and not is_public("fd00::1")
