"""A report made in the web client is resolved in /admin/: the moderator sees the reported post
rendered, removes it, and the queue empties."""

from __future__ import annotations

from playwright.async_api import expect

from handlers.admin import create_superuser
from tests.web.conftest import Person, make_post, person, signed_in
from tests.support import login


async def test_a_reported_post_is_removed_from_the_admin_queue(server, api, browser, pool):
    row = await create_superuser(pool, "root", "root@example.com", "correct horse battery")
    root = Person({"id": str(row["id"]), "username": "root"}, await login(api, "root"))
    ola, pim = await person(api, "ola"), await person(api, "pim")
    post = await make_post(api, ola, "Buy followers cheap #spam")

    reporter = await (await signed_in(browser, server, pim)).new_page()
    await reporter.goto(f"/p/{post['id']}")
    await reporter.get_by_role("article").get_by_role("button", name="Report").click()
    dialog = reporter.get_by_role("dialog", name="Report this post")
    await dialog.get_by_label("Reason").select_option("spam")
    await dialog.get_by_role("button", name="Send report").click()
    await expect(dialog.get_by_text("moderators will look at it")).to_be_visible()

    page = await (await signed_in(browser, server, root)).new_page()
    await page.goto("/admin/")
    report = page.get_by_role("article").filter(has_text="Buy followers cheap")
    await expect(report).to_contain_text("spam")
    await report.get_by_role("button", name="Remove").click()
    await expect(page.get_by_text("The queue is empty.")).to_be_visible()
    assert (await api.get(f"/api/posts/{post['id']}/", headers=pim.headers)).status == 404
    await page.get_by_label("Status").select_option("resolved")
    await expect(page.get_by_role("article").first).to_contain_text("Resolved")
