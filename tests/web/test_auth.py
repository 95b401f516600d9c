"""The links in glint's e-mails open the web client: verifying an address, and resetting a
password then logging in with the new one."""

from __future__ import annotations

import re

from playwright.async_api import expect

from storage import email
from tests.conftest import wait_for
from tests.web.conftest import person


async def link_in_mail(pool, address: str, path: str) -> str:
    found: list[str] = []

    async def arrived() -> bool:
        for message in await email.sent_to(pool, address):
            found.extend(re.findall(r"https?://\S+(" + re.escape(path) + r"\?token=\S+)", message.body))
        return bool(found)

    await wait_for(arrived)
    return found[0]  # newest first


async def test_the_e_mail_links_verify_the_address_and_reset_the_password(server, api, browser, pool):
    nia = await person(api, "nia")
    page = await (await browser.new_context(base_url=str(server.make_url("")))).new_page()
    await page.goto(await link_in_mail(pool, "nia@example.com", "/verify"))
    await expect(page.get_by_text("Your e-mail is verified.")).to_be_visible()
    assert (await (await api.get(f"/api/accounts/users/{nia.id}/", headers=nia.headers)).json())["is_verified"]

    await page.goto("/login")
    await page.get_by_role("link", name="Forgot your password?").click()
    await page.get_by_label("E-mail").fill("nia@example.com")
    await page.get_by_role("button", name="Send reset link").click()
    await expect(page.get_by_text("a reset link is on its way")).to_be_visible()
    await page.goto(await link_in_mail(pool, "nia@example.com", "/reset"))
    await page.get_by_label("New password").fill("a brand new passphrase")
    await page.get_by_role("button", name="Set password").click()
    await expect(page.get_by_text("Your password is changed.")).to_be_visible()

    await page.get_by_role("link", name="Log in", exact=True).click()
    await page.get_by_label("Username or e-mail").fill("nia")
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_be_visible()  # the old password, in the API's words
    await page.get_by_label("Password").fill("a brand new passphrase")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
