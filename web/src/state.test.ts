import { describe, expect, it } from "vitest";
import { Message } from "./api";
import { countNewMessage, setUnreadMessages, unreadMessages } from "./state";

function message(conversation: string, seq: number): Message {
  return {
    id: `${conversation}-${seq}`, conversation_id: conversation, seq, sender_id: "other", client_id: `c${seq}`,
    text: "hi", media: null, reply_to_seq: null, created_at: "2026-12-03T00:00:00Z",
  };
}

describe("the unread messages badge", () => {
  it("keeps a message counted live when a list read before it answers after it", () => {
    setUnreadMessages([{ id: "c1", unread_count: 0, last_seq: 4 }]);
    countNewMessage(message("c1", 5));
    expect(unreadMessages.get()).toEqual({ c1: 1 });
    setUnreadMessages([{ id: "c1", unread_count: 0, last_seq: 4 }]);  // the list of before seq 5
    expect(unreadMessages.get()).toEqual({ c1: 1 });
    setUnreadMessages([{ id: "c1", unread_count: 0, last_seq: 5 }]);  // read elsewhere since
    expect(unreadMessages.get()).toEqual({});
  });

  it("counts a message delivered twice once", () => {
    countNewMessage(message("c2", 1));
    countNewMessage(message("c2", 1));
    countNewMessage(message("c2", 2));
    expect(unreadMessages.get().c2).toBe(2);
  });
});
