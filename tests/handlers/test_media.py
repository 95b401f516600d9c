"""Media uploads: renditions, orientation and metadata, refusals that leave nothing behind,
signed links."""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import time
import zlib

import aiohttp
import pyvips
import pytest

from app.main import create_app
from handlers.context import config_key, links_key, s3_key
from jobs.media import remove_unused_media
from storage.media import MediaLinks
from tests.conftest import make_config
from tests.support import form, jpeg, mp4, upload, user_with_token


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit PNG of width x height pixels that compresses to a few kilobytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


async def stored_objects(client, user_id: str) -> list[str]:
    s3 = client.app[s3_key]
    bucket = client.app[config_key].s3.bucket
    listing = await s3.list_objects_v2(Bucket=bucket, Prefix=f"media/{user_id}/")
    return [o["Key"] for o in listing.get("Contents", [])]


async def media_rows(pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM media")


async def fetch(url) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read(), response.headers.get("Content-Type", "")


async def test_jpeg_upload_makes_webp_and_jpeg_renditions_never_upscaled(client, pool):
    user, headers = await user_with_token(client)
    response = await upload(client, headers, jpeg(800, 600))
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["kind"] == "image" and (body["width"], body["height"]) == (800, 600)
    assert body["placeholder"].startswith("#") and len(body["placeholder"]) == 7
    widths = {name: r["width"] for name, r in body["renditions"].items()}
    # 1080 would upscale: the largest rendition is the image's own width, under the name "1080"
    assert widths == {"1080.webp": 800, "1080.jpg": 800, "640.webp": 640, "640.jpg": 640,
                      "320.webp": 320, "320.jpg": 320, "150.webp": 150, "150.jpg": 150}
    assert body["renditions"]["320.webp"]["height"] == 240
    status, data, _ = await fetch(client.make_url(body["url"] + "320.webp"))
    assert status == 200 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    status, data, _ = await fetch(client.make_url(body["url"] + "150.jpg"))
    assert status == 200 and data[:3] == b"\xff\xd8\xff"
    assert len(await stored_objects(client, user["id"])) == 9  # original + 8 renditions
    assert await media_rows(pool) == 1


async def test_exif_orientation_is_applied_and_metadata_stripped(client):
    _, headers = await user_with_token(client)
    source = pyvips.Image.new_from_buffer(jpeg(400, 200), "")
    source = source.copy()
    source.set_type(pyvips.GValue.gint_type, "orientation", 6)
    response = await upload(client, headers, source.jpegsave_buffer())
    assert response.status == 201, await response.text()
    body = await response.json()
    assert (body["width"], body["height"]) == (200, 400)  # rotated a quarter turn
    for name in ("150.jpg", "150.webp"):
        status, data, _ = await fetch(client.make_url(body["url"] + name))
        rendition = pyvips.Image.new_from_buffer(data, "")
        assert (rendition.width, rendition.height) == (150, 300)
        assert "exif-data" not in rendition.get_fields()
        assert "orientation" not in rendition.get_fields()


async def test_png_with_alpha_and_webp_are_accepted(client):
    _, headers = await user_with_token(client)
    rgba = (pyvips.Image.black(300, 300, bands=4) + [0, 0, 255, 128]).cast("uchar").copy(interpretation="srgb")
    for data, name in ((rgba.pngsave_buffer(), "a.png"), (rgba.webpsave_buffer(), "a.webp")):
        response = await upload(client, headers, data, filename=name, content_type="application/octet-stream")
        assert response.status == 201, await response.text()
        body = await response.json()
        assert body["renditions"]["320.jpg"]["width"] == 300


async def test_heif_container_is_read_when_libvips_can(client):
    _, headers = await user_with_token(client)
    avif = (pyvips.Image.black(300, 200) + [10, 100, 200]).cast("uchar").copy(interpretation="srgb")
    response = await upload(client, headers, avif.heifsave_buffer(compression="av1"), filename="x.heic")
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["content_type"] == "image/heif" and body["renditions"]["320.webp"]["width"] == 300
    garbage = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 500
    response = await upload(client, headers, garbage, filename="x.heic")
    assert response.status == 415


@pytest.mark.parametrize("data, status", [
    (png_bomb(), 413),
    (b"just some text, not a picture at all\n" * 20, 415),
    (jpeg(1200, 900, noise=True)[:30000], 400),
], ids=["decompression-bomb-png", "text-named-jpg", "truncated-jpeg"])
async def test_refused_upload_leaves_nothing_in_s3_or_the_database(client, pool, data, status):
    user, headers = await user_with_token(client)
    response = await upload(client, headers, data)
    assert response.status == status, await response.text()
    assert "error" in await response.json()
    assert await stored_objects(client, user["id"]) == []
    assert await media_rows(pool) == 0


async def test_oversized_upload_is_refused_mid_stream(aiohttp_client, stack_env, config, pool):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         media_image_max_bytes=200_000)))
    user, headers = await user_with_token(client)
    data = jpeg(2000, 2000, noise=True, Q=95)
    assert len(data) > 200_000
    response = await upload(client, headers, data)
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"
    assert await stored_objects(client, user["id"]) == []
    assert await media_rows(pool) == 0


async def test_upload_beyond_the_json_body_limit_streams(client):
    """client_max_size (1 MB) limits request.read(), not the multipart stream."""
    _, headers = await user_with_token(client)
    data = jpeg(2000, 2000, noise=True, Q=95)
    assert len(data) > 1024 * 1024
    response = await upload(client, headers, data)
    assert response.status == 201, await response.text()
    assert (await response.json())["width"] == 2000


async def test_mp4_is_stored_as_is(client):
    user, headers = await user_with_token(client)
    data = mp4()
    response = await upload(client, headers, data, filename="clip.mov", content_type="video/quicktime")
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["kind"] == "video" and body["content_type"] == "video/mp4"
    status, fetched, _ = await fetch(client.make_url(body["url"] + "original"))
    assert status == 200 and fetched == data


async def test_mp4_without_a_movie_header_is_400(client, pool):
    user, headers = await user_with_token(client)
    response = await upload(client, headers, mp4(moov=False))
    assert response.status == 400
    assert await stored_objects(client, user["id"]) == [] and await media_rows(pool) == 0


async def test_upload_needs_multipart_with_a_file_field(client):
    _, headers = await user_with_token(client)
    response = await client.post("/api/media/", json={"file": "x"}, headers=headers)
    assert response.status == 415
    other = aiohttp.FormData()
    other.add_field("picture", b"\xff\xd8\xff", filename="a.jpg")
    response = await client.post("/api/media/", data=other, headers=headers)
    assert response.status == 400
    assert "file" in (await response.json())["error"]["fields"]


async def test_upload_needs_authentication(client):
    response = await client.post("/api/media/", data=form(jpeg(10, 10)))
    assert response.status == 401


async def test_get_media_resigns_for_the_owner_and_hides_unposted_media_from_others(client):
    _, headers = await user_with_token(client)
    _, other = await user_with_token(client)
    created = await (await upload(client, headers, jpeg(200, 100))).json()
    response = await client.get(f"/api/media/{created['id']}/", headers=headers)
    assert response.status == 200
    body = await response.json()
    assert body["id"] == created["id"] and set(body["renditions"]) == set(created["renditions"])
    status, _, _ = await fetch(client.make_url(body["url"] + "150.webp"))
    assert status == 200
    assert (await client.get(f"/api/media/{created['id']}/", headers=other)).status == 404
    assert (await client.get("/api/media/12345/", headers=headers)).status == 404


async def test_a_profile_photo_is_shown_to_others_unless_a_block_stands_between(client):
    _, owner = await user_with_token(client)
    other, viewer = await user_with_token(client)
    avatar = await (await upload(client, owner, jpeg(200, 200))).json()
    assert (await client.patch("/api/accounts/users/me/", json={"avatar_media_id": avatar["id"]}, headers=owner)).status == 200
    seen = await client.get(f"/api/media/{avatar['id']}/", headers=viewer)
    assert seen.status == 200
    assert (await seen.json())["renditions"]
    assert (await client.post(f"/api/accounts/users/{other['id']}/block/", headers=owner)).status == 204
    assert (await client.get(f"/api/media/{avatar['id']}/", headers=viewer)).status == 404


async def test_links_are_checked_then_redirected_to_the_public_endpoint(aiohttp_client, stack_env, config):
    public = stack_env["GLINT_S3_ENDPOINT"].replace("127.0.0.1", "localhost")
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         s3_public_endpoint=public)))
    _, headers = await user_with_token(client)
    body = await (await upload(client, headers, jpeg(200, 100))).json()
    head, _, tail = body["url"].partition("/api/media/i/")
    expires, signature, _, owner, media_id, _ = tail.split("/")
    assert head == "" and int(expires) <= time.time() + client.app[config_key].s3.url_ttl
    response = await client.get(body["url"] + "150.webp", allow_redirects=False)
    assert response.status == 307 and response.headers["Location"].startswith(public + "/")
    assert (await fetch(client.make_url(body["url"] + "150.webp")))[0] == 200
    forged = [body["url"] + "original",  # the original keeps the upload's metadata: never through a link
              f"/api/media/i/{expires}/{signature}/media/{owner}/{int(media_id) + 1}/150.webp",
              f"/api/media/i/{int(expires) + 1}/{signature}/media/{owner}/{media_id}/150.webp",
              f"/api/media/f/{expires}/{signature}/media/{owner}/{media_id}/150.webp",
              f"/api/media/i/{expires}/{signature}/media/{owner}/{media_id}.x/150.webp",
              f"/api/media/i/{expires}/{'B' if signature[0] == 'A' else 'A'}{signature[1:]}/media/{owner}/{media_id}/150.webp"]
    for url in forged:
        assert (await client.get(url, allow_redirects=False)).status == 404, url
    links = client.app[links_key]
    key = f"media/{owner}/{media_id}/150.jpg"
    assert links.check("i", expires, signature, key) == key
    assert links.check("i", expires, signature, key, now=int(expires) + 1) is None


def test_links_point_at_the_media_host_with_one_signature_per_item():
    links = MediaLinks("https://media.example.com", "s3cret", 3600)
    url = links.folder("media/7/42/", "image", now=1_000_000)
    expires = 1_000_000 // 900 * 900 + 3600
    digest = base64.urlsafe_b64encode(hashlib.md5(f"{expires}:i:media/7/42/:s3cret".encode()).digest()).rstrip(b"=")
    assert url == f"https://media.example.com/api/media/i/{expires}/{digest.decode()}/media/7/42/"
    assert links.folder("media/7/42/", "image", now=1_000_000 + 899 - 1_000_000 % 900) == url  # stable in its window
    assert "/api/media/v/" in links.folder("media/7/42/", "video") and links.folder("media/7/42/", "image") != url


async def test_media_job_removes_unattached_uploads_after_a_day_and_deleted_posts_media(client, pool):
    user, headers = await user_with_token(client)
    old, fresh, posted, deleted = [(await (await upload(client, headers, jpeg(64, 48))).json())["id"] for _ in range(4)]
    for media_ids in ([posted], [deleted]):
        response = await client.post("/api/posts/", json={"caption": "", "media_ids": media_ids}, headers=headers)
        assert response.status == 201
        post_id = (await response.json())["id"]
    assert (await client.delete(f"/api/posts/{post_id}/", headers=headers)).status == 204
    await pool.execute("UPDATE media SET created_at = now() - interval '2 days' WHERE id = ANY($1::bigint[])",
                       [int(old), int(posted)])
    before = await stored_objects(client, user["id"])
    # original and the 150 rendition (at 64 px) in WebP and JPEG; the deleted post's went with it
    assert len(before) == 3 * 3 and deleted not in {key.split("/")[2] for key in before}
    removed = await remove_unused_media(pool, client.app[s3_key], client.app[config_key].s3.bucket, 24 * 3600)
    assert removed == 2
    left = {r["id"] for r in await pool.fetch("SELECT id FROM media")}
    assert left == {int(fresh), int(posted)}
    prefixes = {key.split("/")[2] for key in await stored_objects(client, user["id"])}
    assert prefixes == {fresh, posted}
    assert await remove_unused_media(pool, client.app[s3_key], client.app[config_key].s3.bucket, 24 * 3600) == 0
