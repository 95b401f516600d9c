"""/admin/ for moderators: an admin changes an account's role there and finds it in the audit log;
the pages are not offered to an ordinary account; logged out, /admin/ asks to log in and comes
back."""

from __future__ import annotations

import re

from playwright.async_api import expect

from handlers.admin import create_superuser
from tests.web.conftest import Person, person, signed_in
from tests.support import login


async def test_an_admin_makes_a_moderator_in_admin_and_the_audit_log_shows_it(server, api, browser, pool):
    row = await create_superuser(pool, "root", "root@example.com", "correct horse battery")
    root = Person({"id": str(row["id"]), "username": "root"}, await login(api, "root"))
    lena = await person(api, "lena")

    page = await (await signed_in(browser, server, root)).new_page()
    await page.goto("/")
    await page.get_by_role("link", name="Moderation").click()
    await expect(page.get_by_role("heading", name="Moderation")).to_be_visible()
    await page.get_by_role("link", name="Accounts").click()
    await page.get_by_label("Find an account").fill("len")
    await page.get_by_role("button", name="lena").click()
    await page.get_by_label("Role").select_option("moderator")
    await page.get_by_role("button", name="Set role").click()
    await expect(page.get_by_text("Role changed.")).to_be_visible()

    await page.get_by_role("link", name="Audit log").click()
    row = page.get_by_role("row").filter(has_text="role changed")
    await expect(row).to_contain_text("root")
    await expect(row).to_contain_text("user → moderator")

    # the new moderator is offered the pages (without the admin-only audit log); others are not
    moderator = await (await signed_in(browser, server, lena)).new_page()
    await moderator.goto("/")
    await moderator.get_by_role("link", name="Moderation").click()
    await expect(moderator.get_by_role("link", name="Reports")).to_be_visible()
    await expect(moderator.get_by_role("link", name="Audit log")).to_have_count(0)
    plain = await (await signed_in(browser, server, await person(api, "mo"))).new_page()
    await plain.goto("/")
    await expect(plain.get_by_role("navigation", name="Main")).to_be_visible()
    await expect(plain.get_by_role("link", name="Moderation")).to_have_count(0)
    await plain.goto("/admin/")
    await expect(plain.get_by_role("heading", name="Moderation")).to_have_count(0)


async def test_a_moderator_finds_a_suspended_account_in_admin_and_lifts_the_suspension(server, api, browser, pool):
    row = await create_superuser(pool, "boss", "boss@example.com", "correct horse battery")
    boss = Person({"id": str(row["id"]), "username": "boss"}, await login(api, "boss"))
    await person(api, "dana")

    page = await (await signed_in(browser, server, boss)).new_page()
    await page.goto("/admin/")
    await page.get_by_role("link", name="Accounts").click()
    await page.get_by_label("Find an account").fill("dan")
    await page.get_by_role("button", name="dana").click()
    await page.get_by_label("Reason").fill("spam")
    await page.get_by_role("button", name="Suspend", exact=True).click()
    await expect(page.get_by_text("Suspended.", exact=True)).to_be_visible()
    await expect(page.locator(".card")).to_contain_text("suspended: spam")

    # found again by name, suspended as it is (the users list hides it), and lifted from here
    await page.reload()
    await page.get_by_label("Find an account").fill("dan")
    await expect(page.get_by_role("listitem").filter(has_text="dana")).to_contain_text("suspended: spam")
    await page.get_by_role("button", name="dana").click()
    await page.get_by_role("button", name="Unsuspend").click()
    await expect(page.get_by_text("Unsuspended.")).to_be_visible()
    await expect(page.locator(".card")).to_contain_text("user")
    assert await pool.fetchval("SELECT is_active FROM users WHERE username = 'dana'") is True


async def test_admin_when_logged_out_asks_to_log_in_and_then_returns_to_admin(server, api, browser, pool):
    await create_superuser(pool, "boss", "boss@example.com", "correct horse battery")
    page = await (await browser.new_context(base_url=str(server.make_url("")))).new_page()
    await page.goto("/admin/")
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fadmin%2F$"))
    await page.get_by_label("Username or e-mail").fill("boss")
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Moderation")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/admin/$"))

    # the same for any page of the app; a next= pointing off the site goes home instead
    log_out = page.locator("section").filter(has=page.get_by_role("heading", name="Log out")).get_by_role("button")
    await page.get_by_role("link", name="Settings").click()
    await log_out.click()
    await page.goto("/settings#blocked")
    await page.get_by_label("Username or e-mail").fill("boss")
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/settings#blocked$"))
    await log_out.click()
    await page.goto("/login?next=//evil.example/")
    await page.get_by_label("Username or e-mail").fill("boss")
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await expect(page).to_have_url(str(server.make_url("/")))
    await page.context.close()
