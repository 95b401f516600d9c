"""Locust user flows for teams who already run Locust (locust is not a glint dependency).

    pip install locust
    locust -f bench/locustfile.py --host http://127.0.0.1:8080 --users 100 --spawn-rate 10 \
        --run-time 2m --headless

Each simulated user logs in as a seeded user (`glint bench seed`: usernames bench0, bench1, ...,
password `bench-password`; set GLINT_BENCH_USERS to the seeded count), or registers a new account
when GLINT_BENCH_REGISTER=1, then reads the home feed, posts (an upload, then the post), likes,
comments, and reads and sends direct messages. Logins hit argon2 and the per-address login limit
(GLINT_RATE_LIMIT_AUTH_PER_MINUTE): raise it on the server for many simulated users.
"""

from __future__ import annotations

import io
import itertools
import os
import random
import uuid

from locust import HttpUser, between, task

PASSWORD = "bench-password"
SEEDED_USERS = int(os.environ.get("GLINT_BENCH_USERS", "100000"))
REGISTER = os.environ.get("GLINT_BENCH_REGISTER") == "1"
_numbers = itertools.count(random.randrange(SEEDED_USERS))


def tiny_jpeg() -> bytes:
    """A small real JPEG for uploads (pyvips when it is there, else Pillow)."""
    try:
        import pyvips

        return pyvips.Image.black(64, 48, bands=3).add([30, 120, 200]).cast("uchar").jpegsave_buffer(Q=80)
    except ImportError:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (30, 120, 200)).save(buffer, "JPEG")
        return buffer.getvalue()


class GlintUser(HttpUser):
    """Register or log in, then a mix of the main REST flows."""

    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        if REGISTER:
            name = f"locust{uuid.uuid4().hex[:12]}"
            self.client.post("/api/accounts/users/register/", name="register",
                             json={"username": name, "email": f"{name}@locust.test", "password": PASSWORD})
        else:
            name = f"bench{next(_numbers) % SEEDED_USERS}"
        resp = self.client.post("/api/token/", json={"username": name, "password": PASSWORD}, name="login")
        tokens = resp.json() if resp.status_code == 200 else {}
        self.client.headers["Authorization"] = f"Bearer {tokens.get('access', '')}"
        self.post_ids: list[str] = []
        self.conversation_ids: list[str] = []
        self.image = tiny_jpeg()

    @task(10)
    def feed(self) -> None:
        resp = self.client.get("/api/posts/feed/?limit=20", name="/api/posts/feed/")
        if resp.status_code == 200:
            self.post_ids = [p["id"] for p in resp.json().get("results", [])] or self.post_ids

    @task(3)
    def like(self) -> None:
        if self.post_ids:
            self.client.post(f"/api/posts/{random.choice(self.post_ids)}/like/", name="/api/posts/{id}/like/")

    @task(2)
    def comment(self) -> None:
        if self.post_ids:
            self.client.post("/api/comments/", name="/api/comments/",
                             json={"post_id": random.choice(self.post_ids), "text": "nice one"})

    @task(1)
    def post(self) -> None:
        resp = self.client.post("/api/media/", files={"file": ("photo.jpg", self.image, "image/jpeg")},
                                name="/api/media/")
        if resp.status_code == 201:
            self.client.post("/api/posts/", name="/api/posts/",
                             json={"caption": "from locust #bench", "media_ids": [resp.json()["id"]]})

    @task(5)
    def conversations(self) -> None:
        resp = self.client.get("/api/conversations/", name="/api/conversations/")
        if resp.status_code == 200:
            self.conversation_ids = [c["id"] for c in resp.json().get("results", [])]

    @task(8)
    def message(self) -> None:
        if not self.conversation_ids:
            return
        conversation = random.choice(self.conversation_ids)
        self.client.get(f"/api/conversations/{conversation}/messages/?limit=20",
                        name="/api/conversations/{id}/messages/ GET")
        self.client.post(f"/api/conversations/{conversation}/messages/", name="/api/conversations/{id}/messages/",
                         json={"client_id": uuid.uuid4().hex, "text": "hello from locust"})
