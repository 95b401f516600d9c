from tests.support import bearer, frame_of, open_socket, start_conversation, user_and_token


async def test_a_message_sent_over_the_socket_reaches_the_other_member(client):
    ana, ana_token = await user_and_token(client)
    bob, bob_token = await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    ws_ana = await open_socket(client, ana_token)
    ws_bob = await open_socket(client, bob_token)
    await ws_ana.send_json({"type": "message.send", "ref": 1, "conversation_id": conv["id"], "client_id": "c1",
                            "text": "hi"})
    ack = await frame_of(ws_ana, "message.ack")
    assert ack["ref"] == 1 and ack["message"]["seq"] == 1
    new = await frame_of(ws_bob, "message.new")
    assert new["message"]["text"] == "hi"
    delivered = await frame_of(ws_ana, "message.delivered")
    assert delivered["seq"] == 1 and delivered["user_id"] == bob["id"]
