"""Blocking from a profile and undoing it from Settings: the server hides a blocked account from
its blocker too (404), so the client takes the blocker home with a note and lists the blocks,
page by page, each with its unblock."""

from __future__ import annotations

from playwright.async_api import expect

from tests.web.conftest import person, signed_in


async def test_a_block_from_a_profile_goes_home_with_a_note_and_is_undone_in_settings(server, api, browser):
    ana, cleo = await person(api, "ana"), await person(api, "cleo")

    page = await (await signed_in(browser, server, ana)).new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(f"/u/{cleo.id}")
    await expect(page.get_by_role("heading", name="cleo")).to_be_visible()
    await page.get_by_role("button", name="More actions").click()
    await page.get_by_role("menuitem", name="Block").click()

    # home, with a note naming the block and where to undo it; no stale profile header
    await expect(page).to_have_url(str(server.make_url("/")))
    note = page.get_by_role("status").filter(has_text="You blocked cleo")
    await expect(note).to_contain_text("unblock them in Settings")
    await expect(page.get_by_role("button", name="Follow")).to_have_count(0)
    await expect(page.get_by_role("button", name="Message")).to_have_count(0)

    # the profile itself, reloaded, says why it is hidden and offers the unblock
    await page.goto(f"/u/{cleo.id}")
    await expect(page.get_by_text("You blocked cleo.")).to_be_visible()
    await expect(page.get_by_role("button", name="Unblock cleo")).to_be_visible()

    await page.goto("/")
    await page.get_by_role("link", name="Settings").click()
    blocked = page.get_by_role("list", name="Blocked accounts")
    await expect(blocked.get_by_role("link", name="cleo")).to_be_visible()
    await blocked.get_by_role("button", name="Unblock cleo").click()
    await expect(page.get_by_text("Unblocked cleo.")).to_be_visible()
    await expect(blocked.get_by_role("listitem")).to_have_count(0)
    await expect(page.get_by_text("You haven't blocked anyone.")).to_be_visible()

    # unblocked: the profile is back, with its Follow button
    await page.goto(f"/u/{cleo.id}")
    await expect(page.get_by_role("button", name="Follow", exact=True)).to_be_visible()
    await page.context.close()


async def test_settings_lists_blocked_accounts_a_page_at_a_time(server, api, browser):
    dee = await person(api, "dee")
    names = [f"blocked{n:02d}" for n in range(21)]
    for name in names:
        other = await person(api, name)
        response = await api.post(f"/api/accounts/users/{other.id}/block/", headers=dee.headers)
        assert response.status in (200, 201, 204), await response.text()

    page = await (await signed_in(browser, server, dee)).new_page()
    await page.goto("/settings#blocked")
    blocked = page.get_by_role("list", name="Blocked accounts")
    # newest first, twenty to the API's page
    await expect(blocked.get_by_role("listitem")).to_have_count(20)
    await expect(blocked.get_by_role("link", name="blocked00")).to_have_count(0)
    await page.get_by_role("button", name="Show more blocked accounts").click()
    await expect(blocked.get_by_role("listitem")).to_have_count(21)
    await expect(blocked.get_by_role("link", name="blocked00")).to_be_visible()
    await expect(page.get_by_role("button", name="Show more blocked accounts")).to_have_count(0)
    await page.context.close()
