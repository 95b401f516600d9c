import { afterEach, describe, expect, it } from "vitest";
import { Message, tokens } from "./api";
import { mergeMessages, Realtime } from "./socket";

class FakeSocket {
  static all: FakeSocket[] = [];
  sent: any[] = [];
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number }) => void) | null = null;
  constructor(public url: string) { FakeSocket.all.push(this); }
  send(data: string) { this.sent.push(JSON.parse(data)); }
  close() { this.onclose?.({ code: 1006 }); }
  serve(frame: object) { this.onmessage?.({ data: JSON.stringify(frame) }); }
}

const message = (seq: number, text = `m${seq}`): Message => ({
  id: String(seq), conversation_id: "7", seq, sender_id: "1", client_id: `c${seq}`, text, media: null,
  reply_to_seq: null, created_at: "2026-01-01T00:00:00Z",
});

afterEach(() => { FakeSocket.all = []; tokens.set(null); });

describe("mergeMessages", () => {
  it("keeps each seq once, in order, with the newest version", () => {
    const merged = mergeMessages([message(2), message(1)], [message(2, "edited"), message(3), message(1)]);
    expect(merged.map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(merged[1].text).toBe("edited");
  });
});

describe("Realtime", () => {
  it("resumes by sync with the last seq per conversation and re-sends unacknowledged messages", () => {
    tokens.set({ access: "a", refresh: "r" });
    const rt = new Realtime((url) => new FakeSocket(url) as unknown as WebSocket);
    rt.start();
    const first = FakeSocket.all[0];
    expect(first.url).toContain("/ws?token=a");
    first.serve({ type: "hello", user_id: "1", session_id: "s" });
    first.serve({ type: "message.new", message: message(5) });
    expect(rt.known("7")).toBe(5);

    first.close();                       // the connection drops ...
    rt.sendMessage({ conversation_id: "7", client_id: "offline-1", text: "later" });
    expect(rt.status).toBe("closed");
    window.dispatchEvent(new Event("online"));   // ... and comes back
    const second = FakeSocket.all[1];
    second.serve({ type: "hello", user_id: "1", session_id: "s2" });
    expect(second.sent[0]).toEqual({ type: "sync", conversations: { "7": 5 } });
    const resent = second.sent.find((f) => f.type === "message.send");
    expect(resent.client_id).toBe("offline-1");

    second.serve({ type: "message.ack", ref: resent.ref, message: { ...message(6), client_id: "offline-1" } });
    second.close();
    window.dispatchEvent(new Event("online"));
    FakeSocket.all[2].serve({ type: "hello", user_id: "1", session_id: "s3" });
    // acknowledged: not sent a third time
    expect(FakeSocket.all[2].sent.filter((f) => f.type === "message.send")).toHaveLength(0);
    expect(FakeSocket.all[2].sent[0].conversations).toEqual({ "7": 6 });
    rt.stop();
  });
});
