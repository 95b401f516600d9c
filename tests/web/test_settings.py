"""Settings in the browser: the data export's state is the server's, the same in every browser;
none yet (the API's 404) is a normal state, not an error."""

from __future__ import annotations

from playwright.async_api import expect

from tests.web.conftest import person, signed_in

EXPORT = "/api/accounts/export/"


async def test_the_export_state_comes_from_the_server_so_a_second_browser_sees_a_requested_one(
        server, api, browser):
    kit = await person(api, "kit")
    page = await (await signed_in(browser, server, kit)).new_page()
    errors: list[str] = []
    # the browser logs the API's 404 for "no export yet" itself; anything else is an error
    page.on("console", lambda message: errors.append(message.text) if message.type == "error"
            and not message.location.get("url", "").endswith(EXPORT) else None)
    failed: list[str] = []
    page.on("response", lambda response: (failed.append(f"{response.status} {response.url}")
                                          if response.status >= 400 and not response.url.endswith(EXPORT) else None))

    async with page.expect_response(lambda r: r.url.endswith(EXPORT) and r.request.method == "GET") as asked:
        await page.goto("/settings")
    assert (await asked.value).status == 404  # asked the server, which has none
    await expect(page.get_by_role("heading", name="Download your data")).to_be_visible()
    await expect(page.get_by_text("No export yet.")).to_be_visible()
    await page.wait_for_load_state("networkidle")
    await expect(page.get_by_role("alert")).to_have_count(0)
    assert errors == [], errors
    assert failed == [], failed
    assert await page.evaluate("Object.keys(localStorage).filter((k) => k.includes('export'))") == []

    await page.get_by_role("button", name="Request an export").click()
    await expect(page.get_by_text("Export started.")).to_be_visible()
    shown = "Preparing your archive…", "Download the archive"
    await expect(page.get_by_text(shown[0]).or_(page.get_by_role("link", name=shown[1]))).to_be_visible()

    # another browser (nothing in its storage) sees the same export
    other = await (await signed_in(browser, server, kit)).new_page()
    await other.goto("/settings")
    await expect(other.get_by_text(shown[0]).or_(other.get_by_role("link", name=shown[1]))).to_be_visible()
    await expect(other.get_by_text("No export yet.")).to_have_count(0)
    assert errors == [], errors
    await page.context.close()
    await other.context.close()
