"""Two people chatting in two browser windows: live messages, typing, receipts, a reaction, and
one side's network cut and restored with nothing lost or shown twice."""

from __future__ import annotations

from playwright.async_api import expect

from tests.web.conftest import PHONE, conversation, follow, person, signed_in


async def seqs(page) -> list[str]:
    return await page.locator("li.message[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")


async def has_reactions(api) -> bool:
    spec = await (await api.get("/api/openapi.json")).json()
    return any(path.endswith("/reactions/") for path in spec["paths"])


async def test_two_windows_chat_live_and_lose_nothing_across_a_cut(server, api, browser):
    ana, ben = await person(api, "ana"), await person(api, "ben")
    await follow(api, ana, ben)
    await follow(api, ben, ana)
    conversation_id = await conversation(api, ana, ben)

    ana_ctx = await signed_in(browser, server, ana)
    ben_ctx = await signed_in(browser, server, ben, viewport=PHONE)
    a, b = await ana_ctx.new_page(), await ben_ctx.new_page()
    await a.goto(f"/direct/{conversation_id}")
    await b.goto(f"/direct/{conversation_id}")
    await expect(a.get_by_role("heading", name="ben")).to_be_visible()
    await expect(b.get_by_role("heading", name="ana")).to_be_visible()

    # typing shows on the other side
    await a.get_by_label("Message", exact=True).press_sequentially("hi b")
    await expect(b.get_by_text("ana is typing…")).to_be_visible()
    await a.get_by_label("Message", exact=True).press_sequentially("en")
    await a.get_by_role("button", name="Send", exact=True).click()
    await expect(b.locator("li.message").get_by_text("hi ben")).to_be_visible()
    # the notice goes with the message it announced (the same update), not 4 s later when it fades
    await expect(b.get_by_text("ana is typing…")).to_have_count(0, timeout=1000)
    # ben has it open, so ana sees it read
    await expect(a.get_by_text("Seen", exact=True)).to_be_visible()

    # a reaction reaches the sender (once the server has message reactions, API.md "More in
    # direct messages")
    if await has_reactions(api):
        await b.get_by_role("button", name="React to message 1").click()
        await b.get_by_role("button", name="React ❤️").click()
        await expect(a.get_by_label("Reactions")).to_have_text("❤️")

    # ben's network goes away: the banner says so; ana writes twice, ben once while offline
    await ben_ctx.set_offline(True)
    await expect(b.get_by_text("Connection lost")).to_be_visible()
    await a.get_by_label("Message", exact=True).fill("are you there?")
    await a.get_by_role("button", name="Send", exact=True).click()
    await a.get_by_label("Message", exact=True).fill("hello?")
    await a.get_by_role("button", name="Send", exact=True).click()
    await b.get_by_label("Message", exact=True).fill("written on the train")
    await b.get_by_role("button", name="Send", exact=True).click()
    await expect(b.get_by_text("Sending…")).to_be_visible()
    await expect(a.locator("li.message")).to_have_count(3)

    await ben_ctx.set_offline(False)
    await expect(b.get_by_text("Connection lost")).to_be_hidden()
    for text in ("are you there?", "hello?", "written on the train"):
        await expect(b.locator("li.message[data-seq]").get_by_text(text, exact=True)).to_have_count(1)
    await expect(a.locator("li.message[data-seq]").get_by_text("written on the train", exact=True)).to_have_count(1)
    await expect(b.get_by_text("Sending…")).to_have_count(0)
    assert await seqs(b) == ["1", "2", "3", "4"]
    assert await seqs(a) == ["1", "2", "3", "4"]

    # and a reload shows the same history, each message once
    await b.reload()
    await expect(b.locator("li.message[data-seq]")).to_have_count(4)
    await ana_ctx.close()
    await ben_ctx.close()


async def test_a_new_message_badges_messages_live_on_desktop_and_phone_and_after_a_reload(server, api, browser):
    ana, ben = await person(api, "ana"), await person(api, "ben")
    await follow(api, ana, ben)
    conversation_id = await conversation(api, ben, ana)

    desktop = await (await signed_in(browser, server, ana)).new_page()
    phone = await (await signed_in(browser, server, ana, viewport=PHONE)).new_page()
    for page in (desktop, phone):
        await page.goto("/")
        await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
        await expect(page.get_by_test_id("messages-badge")).to_have_count(0)

    response = await api.post(f"/api/conversations/{conversation_id}/messages/",
                              json={"client_id": "badge-1", "text": "are you up?"}, headers=ben.headers)
    assert response.status == 201, await response.text()
    for page in (desktop, phone):
        badge = page.get_by_role("link", name="Messages").get_by_test_id("messages-badge")
        await expect(badge).to_be_visible()
        await expect(badge).to_contain_text("1 unread")

    # a second message in the same conversation: still one conversation with something unread
    await api.post(f"/api/conversations/{conversation_id}/messages/",
                   json={"client_id": "badge-2", "text": "hello?"}, headers=ben.headers)
    await phone.reload()
    await expect(phone.get_by_test_id("messages-badge")).to_contain_text("1 unread")

    # reading it clears the badge, and a reload agrees
    await desktop.get_by_role("link", name="Messages").click()
    await desktop.get_by_role("link", name="ben").click()
    await expect(desktop.locator("li.message").get_by_text("hello?")).to_be_visible()
    await expect(desktop.get_by_test_id("messages-badge")).to_have_count(0)
    await phone.reload()
    await expect(phone.get_by_role("navigation", name="Main")).to_be_visible()
    await expect(phone.get_by_test_id("messages-badge")).to_have_count(0)
    await desktop.context.close()
    await phone.context.close()
