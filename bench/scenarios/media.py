"""media: image uploads (POST /api/media/, multipart), each rendered by the server with libvips.

Options: users (1000), width/height of the JPEG (640x480).
"""

from __future__ import annotations

from bench.scenarios import mint_tokens, option, require_routes, sample_users


def jpeg(width: int, height: int) -> bytes:
    """A real JPEG of the given size (a gradient, made with pyvips)."""
    import pyvips

    xyz = pyvips.Image.xyz(width, height)
    image = (xyz[0] * (255.0 / width)).bandjoin([xyz[1] * (255.0 / height), xyz[0] * 0 + 90]).cast("uchar")
    return image.copy(interpretation="srgb").jpegsave_buffer(Q=80)


async def prepare(target, options) -> dict:
    await require_routes(target.url, "POST /api/media/")
    users = sample_users(target, int(option(options, "users", 1000)), key="any_users")
    return {"tokens": mint_tokens(options.jwt_secret, users, options.token_ttl),
            "jpeg": jpeg(int(option(options, "width", 640)), int(option(options, "height", 480)))}


async def upload(ctx, token: str, op: str = "upload") -> dict | None:
    """One timed upload of the plan's JPEG; the media JSON, or None."""
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("file", ctx.plan["jpeg"], filename="photo.jpg", content_type="image/jpeg")
    return await ctx.request(op, "POST", "/api/media/", token=token, data=form, expect=(201,))


async def work(ctx) -> None:
    tokens = ctx.plan["tokens"]
    turn = {"n": 0}

    async def client(number: int) -> None:
        turn["n"] += 1
        await upload(ctx, tokens[(number + turn["n"] * ctx.options.concurrency) % len(tokens)])

    await ctx.each_client(client)
