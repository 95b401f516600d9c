"""Settings in the browser: a visit with no data export yet is a normal state, not a failed request."""

from __future__ import annotations

from playwright.async_api import expect

from tests.web.conftest import person, signed_in


async def test_settings_without_an_export_logs_no_error_and_a_requested_one_shows_after_a_reload(
        server, api, browser):
    kit = await person(api, "kit")
    page = await (await signed_in(browser, server, kit)).new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    failed: list[str] = []
    page.on("response", lambda response: (failed.append(f"{response.status} {response.url}")
                                          if response.status >= 400 else None))

    await page.goto("/settings")
    await expect(page.get_by_role("heading", name="Download your data")).to_be_visible()
    # everything the page asks for on the way in has answered, none of it with an error
    await page.wait_for_load_state("networkidle")
    assert errors == [], errors
    assert failed == [], failed
    await expect(page.get_by_text("No export yet.")).to_be_visible()

    await page.get_by_role("button", name="Request an export").click()
    await expect(page.get_by_text("Export started.")).to_be_visible()
    await page.reload()
    shown = page.get_by_text("Preparing your archive…").or_(page.get_by_role("link", name="Download the archive"))
    await expect(shown).to_be_visible()
    await expect(page.get_by_text("No export yet.")).to_have_count(0)
    assert errors == [], errors
    await page.context.close()
