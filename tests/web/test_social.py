"""Signing up, posting from the composer (and its failed uploads), the feed with authors'
avatars, who liked a post, a post's author removing comments, a live notification badge and
stories, all through the web client in a real browser."""

from __future__ import annotations

import re

import aiohttp
import pytest
from playwright.async_api import expect

from app.main import create_app
from tests.conftest import make_config
from tests.web.conftest import PHONE, Person, follow, make_post, person, photo, signed_in, upload
from tests.support import login


async def test_sign_up_then_a_two_photo_post_from_the_composer_reaches_a_follower_feed(server, api, browser, tmp_path):
    context = await browser.new_context(viewport=PHONE, base_url=str(server.make_url("")))
    page = await context.new_page()
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    await page.get_by_role("link", name="Sign up").click()
    await page.get_by_label("Username").fill("cleo")
    await page.get_by_label("E-mail").fill("cleo@example.com")
    await page.get_by_label("Password").fill("short")
    await page.get_by_role("button", name="Sign up").click()
    # the API's own words for a refused password
    await expect(page.get_by_role("alert")).to_contain_text("password")
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()

    tokens = await login(api, "cleo")
    me = await api.get("/api/accounts/users/me/", headers={"Authorization": f"Bearer {tokens['access']}"})
    cleo = Person(await me.json(), tokens)
    dan = await person(api, "dan")
    await follow(api, dan, cleo)

    first, second = tmp_path / "one.jpg", tmp_path / "two.jpg"
    first.write_bytes(photo(900, 900, hue=10))
    second.write_bytes(photo(900, 600, hue=120))
    await page.get_by_role("link", name="New post").click()
    await page.get_by_label("Choose photos").set_input_files([first, second])
    await expect(page.get_by_label("Upload of one.jpg")).to_have_attribute("value", "1")
    await expect(page.get_by_label("Upload of two.jpg")).to_have_attribute("value", "1")
    await page.get_by_label("Caption").fill("Two from the hills #weekend with @dan")
    await page.get_by_label("Location").fill("Brecon Beacons")
    await page.get_by_role("button", name="Share").click()
    await expect(page.get_by_role("article", name="Post by cleo")).to_be_visible()

    reader = await (await signed_in(browser, server, dan)).new_page()
    await reader.goto("/")
    post = reader.get_by_role("article", name="Post by cleo")
    await expect(post.get_by_text("Two from the hills")).to_be_visible()
    await expect(post.get_by_role("link", name="#weekend")).to_be_visible()
    await expect(post.get_by_text("Brecon Beacons")).to_be_visible()
    image = post.get_by_role("img", name="Photo 1 of 2 by cleo")
    assert " 320w" in await image.get_attribute("srcset")
    await post.get_by_role("button", name="Next photo").click()
    await expect(post.get_by_role("img", name="Photo 2 of 2 by cleo")).to_be_visible()
    await context.close()
    await reader.context.close()


async def test_a_like_lights_the_author_notification_badge_live(server, api, browser):
    eve, finn = await person(api, "eve"), await person(api, "finn")
    post = await make_post(api, eve, "Morning light")

    author = await (await signed_in(browser, server, eve)).new_page()
    await author.goto("/")
    await expect(author.get_by_role("navigation", name="Main")).to_be_visible()
    await expect(author.get_by_test_id("unread-badge")).to_have_count(0)

    liker = await (await signed_in(browser, server, finn, viewport=PHONE)).new_page()
    await liker.goto(f"/p/{post['id']}")
    article = liker.get_by_role("article", name="Post by eve")
    # a double tap on the photo likes it
    await article.get_by_role("img").dblclick()
    await expect(article.get_by_role("button", name="Unlike")).to_be_visible()
    await expect(article.get_by_text("1 like")).to_be_visible()

    await expect(author.get_by_test_id("unread-badge")).to_contain_text("1 unread")
    await author.get_by_role("link", name="Notifications").click()
    await expect(author.get_by_text("liked your post")).to_be_visible()
    await expect(author.get_by_test_id("unread-badge")).to_have_count(0)
    await author.context.close()
    await liker.context.close()


async def test_a_story_seen_once_is_listed_in_its_owner_viewers(server, api, browser):
    gus, hana = await person(api, "gus"), await person(api, "hana")
    await follow(api, hana, gus)
    media = await upload(api, gus, photo(720, 1280, hue=200))
    story = await (await api.post("/api/stories/", json={"media_id": media["id"], "caption": "Up early"},
                                  headers=gus.headers)).json()

    viewer = await (await signed_in(browser, server, hana, viewport=PHONE)).new_page()
    for _ in range(2):  # seen twice, counted once
        await viewer.goto("/")
        await viewer.get_by_role("navigation", name="Stories").get_by_role("button", name="gus").click()
        dialog = viewer.get_by_role("dialog", name="gus's story")
        await expect(dialog.get_by_text("Up early")).to_be_visible()
        await dialog.get_by_label("Reply to gus").fill("Lovely!")
        await dialog.get_by_label("Reply to gus").press("Enter")
        await expect(dialog.get_by_text("Reply sent")).to_be_visible()
        await dialog.get_by_role("button", name="Close story").click()

    owner = await (await signed_in(browser, server, gus)).new_page()
    await owner.goto("/")
    await owner.get_by_role("button", name="Your story").click()
    await owner.get_by_role("button", name="Seen by 1").click()
    viewers = owner.get_by_role("dialog", name="Viewers")
    await expect(viewers.get_by_text("hana")).to_be_visible()
    await expect(viewers.locator("li")).to_have_count(1)

    # the reply landed in gus's messages: among the requests, as gus does not follow hana
    await owner.keyboard.press("Escape")
    await owner.get_by_role("button", name="Close story").click()
    await owner.get_by_role("link", name="Messages").click()
    await owner.get_by_role("tab", name="Requests").click()
    await expect(owner.get_by_text("Lovely!")).to_be_visible()
    assert story["id"]
    await viewer.context.close()
    await owner.context.close()


async def test_your_own_story_is_in_the_tray_once(server, api, browser):
    ida, jay = await person(api, "ida"), await person(api, "jay")
    await follow(api, ida, jay)
    for who, caption in ((ida, "Mine"), (jay, "Theirs")):
        media = await upload(api, who, photo(720, 1280, hue=80))
        response = await api.post("/api/stories/", json={"media_id": media["id"], "caption": caption},
                                  headers=who.headers)
        assert response.status == 201, await response.text()

    page = await (await signed_in(browser, server, ida, viewport=PHONE)).new_page()
    await page.goto("/")
    tray = page.get_by_role("navigation", name="Stories")
    await expect(tray.get_by_role("button", name="jay")).to_be_visible()
    await expect(tray.get_by_role("button", name="Your story")).to_have_count(1)
    await expect(tray.get_by_role("button", name="ida")).to_have_count(0)
    await expect(tray.get_by_role("button")).to_have_count(2)
    await page.context.close()


async def set_avatar(api, who: Person, hue: int) -> None:
    media = await upload(api, who, photo(400, 400, hue=hue))
    response = await api.patch("/api/accounts/users/me/", json={"avatar_media_id": media["id"]}, headers=who.headers)
    assert response.status == 200, await response.text()


async def comment(api, who: Person, post: dict, text: str) -> dict:
    response = await api.post("/api/comments/", json={"post_id": post["id"], "text": text}, headers=who.headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def test_authors_avatars_show_on_the_feed_the_post_and_its_comments_with_the_initial_when_none(
        server, api, browser):
    kai, lea = await person(api, "kai"), await person(api, "lea")
    await set_avatar(api, kai, hue=30)
    await follow(api, lea, kai)
    post = await make_post(api, kai, "Harbour at dusk")
    await comment(api, lea, post, "Gorgeous")
    await comment(api, kai, post, "Thanks!")

    page = await (await signed_in(browser, server, lea)).new_page()
    await page.goto("/")
    article = page.get_by_role("article", name="Post by kai")
    photo_of = "() => [...document.querySelectorAll('%s')].every((i) => i.complete && i.naturalWidth > 0)"
    avatar = article.locator("header .avatar img")
    await expect(avatar).to_have_count(1)
    await page.wait_for_function(photo_of % "article header .avatar img")  # the photo itself, loaded

    await article.get_by_role("link", name="2 comments").click()
    await expect(page).to_have_url(re.compile(f"/p/{post['id']}$"))
    comments = page.get_by_role("region", name="Comments")
    await expect(page.get_by_role("article", name="Post by kai").locator("header .avatar img")).to_have_count(1)
    theirs = comments.get_by_role("listitem").filter(has_text="Thanks!")
    await expect(theirs.locator(".avatar img")).to_have_count(1)
    await page.wait_for_function(photo_of % ".comments .avatar img")
    # lea has no photo: her initial in its place
    mine = comments.get_by_role("listitem").filter(has_text="Gorgeous")
    await expect(mine.locator(".avatar")).to_have_text("L")
    await expect(mine.locator(".avatar img")).to_have_count(0)
    await page.context.close()


async def test_the_like_count_opens_who_liked_the_post_each_linking_to_their_profile(server, api, browser):
    mia, ned, ola, pia = [await person(api, name) for name in ("mia", "ned", "ola", "pia")]
    post = await make_post(api, mia, "Market day")
    for who in (ned, ola):
        response = await api.post(f"/api/posts/{post['id']}/like/", headers=who.headers)
        assert response.status == 200, await response.text()

    page = await (await signed_in(browser, server, pia)).new_page()
    await page.goto(f"/p/{post['id']}")
    count = page.get_by_role("button", name="2 likes")
    await count.focus()
    await page.keyboard.press("Enter")  # by keyboard, as a button
    likes = page.get_by_role("dialog", name="Likes")
    await expect(likes.get_by_role("link")).to_have_count(2)
    await expect(likes.get_by_role("link", name="ned")).to_have_attribute("href", f"/u/{ned.id}")
    await expect(likes.get_by_role("link", name="ola")).to_have_attribute("href", f"/u/{ola.id}")
    await page.keyboard.press("Escape")
    await expect(likes).to_have_count(0)
    await expect(count).to_be_focused()

    await count.click()
    await likes.get_by_role("link", name="ola").click()
    await expect(page).to_have_url(re.compile(f"/u/{ola.id}$"))
    await expect(page.get_by_role("heading", name="ola")).to_be_visible()
    await page.context.close()


async def test_a_post_author_deletes_someone_elses_comment_and_the_commenter_only_their_own(server, api, browser):
    quin, rae = await person(api, "quin"), await person(api, "rae")
    post = await make_post(api, quin, "Open studio")
    await comment(api, rae, post, "Buy my stuff at spam.example")
    await comment(api, quin, post, "Welcome all")

    commenter = await (await signed_in(browser, server, rae)).new_page()
    await commenter.goto(f"/p/{post['id']}")
    comments = commenter.get_by_role("region", name="Comments")
    await expect(comments.get_by_text("Welcome all")).to_be_visible()
    await expect(comments.get_by_role("button", name=re.compile("^Delete"))).to_have_count(1)
    await expect(comments.get_by_role("listitem").filter(has_text="Welcome all").get_by_role("button", name="Delete")).to_have_count(0)

    author = await (await signed_in(browser, server, quin)).new_page()
    author.on("dialog", lambda dialog: dialog.accept())
    await author.goto(f"/p/{post['id']}")
    await author.get_by_role("button", name="Delete rae's comment").click()
    await expect(author.get_by_text("Comment deleted.")).to_be_visible()
    await expect(author.get_by_text("Buy my stuff")).to_have_count(0)
    await author.reload()
    await expect(author.get_by_text("Welcome all")).to_be_visible()
    await expect(author.get_by_text("Buy my stuff")).to_have_count(0)
    await author.context.close()
    await commenter.context.close()


@pytest.fixture
async def small_uploads(aiohttp_server, stack_env, database_url, redis_clean, web_dist):
    """A glint that takes photos up to 200 KB, so a too-big one is quick to make."""
    app = create_app(make_config(stack_env, database_url=database_url, web_dist=str(web_dist),
                                 rate_limit_auth_per_minute=1000, media_image_max_bytes=200_000))
    return await aiohttp_server(app, host="127.0.0.1")


async def test_a_failed_upload_says_why_in_the_composer_and_can_be_retried_or_replaced(
        small_uploads, browser, tmp_path):
    server = small_uploads
    async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as api:
        sol = await person(api, "sol")
    page = await (await signed_in(browser, server, sol)).new_page()
    await page.goto("/new")
    chooser = page.get_by_label("Choose photos")

    big, fake, notes = tmp_path / "big.jpg", tmp_path / "fake.jpg", tmp_path / "notes.txt"
    big.write_bytes(b"\xff\xd8\xff\xe0" + bytes(400_000))  # a JPEG's first bytes, past the limit
    fake.write_bytes(b"not a photo at all, only words " * 4)
    notes.write_text("shopping list")
    await chooser.set_input_files([big, fake, notes])
    uploads = page.locator(".uploads li")
    await expect(uploads.filter(has_text="big.jpg").get_by_role("alert")).to_have_text(
        "big.jpg is too big to upload (the limit is 0.2 MB). Pick a smaller file.")
    await expect(uploads.filter(has_text="fake.jpg").get_by_role("alert")).to_contain_text(
        "fake.jpg can't be posted: glint takes JPEG, PNG, WebP or HEIC photos and MP4 videos")
    await expect(uploads.filter(has_text="notes.txt").get_by_role("alert")).to_contain_text("notes.txt can't be posted")
    await expect(page.get_by_role("button", name=re.compile("^Retry"))).to_have_count(0)
    share = page.get_by_role("button", name="Share")
    await expect(share).to_be_disabled()
    for name in ("big.jpg", "fake.jpg", "notes.txt"):
        await page.get_by_role("button", name=f"Remove {name}").click()
    await expect(chooser).to_be_focused()  # straight back to picking another

    # the server fails once: the composer says so, and a retry of the same file goes through
    good = tmp_path / "good.jpg"
    good.write_bytes(photo(300, 300, hue=5))
    failures = []

    async def fail_once(route):
        if not failures:
            failures.append(route.request.url)
            await route.fulfill(status=503, json={"error": {"code": "unavailable", "message": "Try later."}})
        else:
            await route.continue_()
    await page.route("**/api/media/", fail_once)
    await chooser.set_input_files([good])
    await expect(page.get_by_role("alert")).to_contain_text("good.jpg didn't upload: something went wrong on glint's side")
    await expect(share).to_be_disabled()
    await page.get_by_role("button", name="Retry good.jpg").click()
    await expect(page.get_by_label("Upload of good.jpg")).to_have_attribute("value", "1")
    await expect(page.get_by_role("alert")).to_have_count(0)

    # the caption counts against the API's limit and takes no more
    caption = page.get_by_label("Caption")
    await caption.fill("x" * 2300)
    assert len(await caption.input_value()) == 2200
    await expect(page.get_by_text("2,200 / 2,200")).to_be_visible()
    await caption.press("y")
    assert await caption.input_value() == "x" * 2200
    await caption.fill("Made it")
    await expect(page.get_by_text("7 / 2,200")).to_be_visible()
    await share.click()
    await expect(page.get_by_role("article", name="Post by sol")).to_contain_text("Made it")
    assert len(failures) == 1
    await page.context.close()
