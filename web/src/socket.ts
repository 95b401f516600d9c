// The /ws connection: reconnects with backoff, resumes by `sync` with the last seq seen per
// conversation, and re-sends unacknowledged messages (the server keeps one per client_id).
import { Message, refreshTokens, tokens } from "./api";

export type Frame = { type: string; [key: string]: any };
export type Status = "connecting" | "open" | "closed";
type Handler = (frame: Frame) => void;

export class Realtime {
  status: Status = "closed";
  private ws: WebSocket | null = null;
  private handlers = new Map<string, Set<Handler>>();
  private statusListeners = new Set<(s: Status) => void>();
  private lastSeq = new Map<string, number>();
  private pending = new Map<string, Frame>(); // ref -> message.send awaiting its ack
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = true;
  private refCounter = 0;
  private watched: string[] = [];
  private makeSocket: (url: string) => WebSocket;

  constructor(makeSocket: (url: string) => WebSocket = (url) => new WebSocket(url)) {
    this.makeSocket = makeSocket;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener("online", this.reconnectNow);
    window.addEventListener("offline", this.dropNow);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.reconnectNow);
    window.removeEventListener("offline", this.dropNow);
    if (this.timer) clearTimeout(this.timer);
    this.ws?.close(1000);
    this.ws = null;
    this.pending.clear();
    this.lastSeq.clear();
    this.setStatus("closed");
  }

  on(type: string, handler: Handler): () => void {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    set.add(handler);
    return () => set!.delete(handler);
  }

  onStatus(l: (s: Status) => void): () => void {
    this.statusListeners.add(l);
    return () => this.statusListeners.delete(l);
  }

  /** The conversation's messages up to seq are known (from history or live frames). */
  seen(conversationId: string, seq: number) {
    if (seq > (this.lastSeq.get(conversationId) ?? 0)) this.lastSeq.set(conversationId, seq);
  }

  known(conversationId: string): number {
    return this.lastSeq.get(conversationId) ?? 0;
  }

  /** Send a frame now if open (returns false when it could not be sent). */
  send(frame: Frame): boolean {
    if (this.ws && this.status === "open") {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  /** Send a message; kept and re-sent on reconnect until the server acknowledges it. */
  sendMessage(frame: Omit<Frame, "type">): string {
    const ref = "m" + ++this.refCounter;
    const full = { ...frame, type: "message.send", ref } as Frame;
    this.pending.set(ref, full);
    this.send(full);
    return ref;
  }

  watchPresence(userIds: string[]) {
    this.watched = Array.from(new Set([...this.watched, ...userIds])).slice(-200);
    this.send({ type: "presence.subscribe", user_ids: this.watched });
  }

  private setStatus(s: Status) {
    if (this.status === s) return;
    this.status = s;
    this.statusListeners.forEach((l) => l(s));
  }

  private connect() {
    const access = tokens.access;
    if (this.stopped || !access) return;
    this.setStatus("connecting");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = this.makeSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(access)}`);
    this.ws = ws;
    ws.onmessage = (e) => {
      let frame: Frame;
      try { frame = JSON.parse(e.data); } catch { return; }
      this.receive(frame);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.setStatus("closed");
      if (this.stopped) return;
      if (e.code === 4401) {
        refreshTokens().then((ok) => (ok ? this.connect() : this.stop()));
        return;
      }
      if (e.code === 4403) { this.stop(); tokens.set(null); return; }
      this.schedule();
    };
  }

  private schedule() {
    if (this.timer) clearTimeout(this.timer);
    const delay = Math.min(5000, 300 * 2 ** this.attempt++) * (0.75 + Math.random() / 2);
    this.timer = setTimeout(() => { this.timer = null; this.connect(); }, delay);
  }

  private reconnectNow = () => {
    if (this.stopped || this.status === "open" || this.status === "connecting") return;
    this.attempt = 0;
    if (this.timer) clearTimeout(this.timer);
    this.connect();
  };

  private dropNow = () => {
    // the browser knows the network is gone: say so now rather than at the next heartbeat
    const ws = this.ws;
    if (ws) { this.ws = null; ws.close(); this.setStatus("closed"); this.schedule(); }
  };

  private receive(frame: Frame) {
    if (frame.type === "hello") {
      this.attempt = 0;
      this.setStatus("open");
      const conversations = Object.fromEntries(this.lastSeq);
      if (Object.keys(conversations).length) this.send({ type: "sync", conversations });
      if (this.watched.length) this.send({ type: "presence.subscribe", user_ids: this.watched });
      this.pending.forEach((f) => this.send(f));
    }
    if (frame.type === "message.ack") this.pending.delete(frame.ref);
    if (frame.type === "error" && frame.ref && this.pending.has(frame.ref)) this.pending.delete(frame.ref);
    const message: Message | undefined = frame.message;
    if (message && (frame.type === "message.new" || frame.type === "message.ack")) {
      this.seen(message.conversation_id, message.seq);
    }
    this.handlers.get(frame.type)?.forEach((h) => h(frame));
    this.handlers.get("*")?.forEach((h) => h(frame));
  }
}

export const realtime = new Realtime();

/** Merge messages by seq: each seq once, newest version wins, ascending order. */
export function mergeMessages(list: Message[], incoming: Message[]): Message[] {
  const bySeq = new Map(list.map((m) => [m.seq, m]));
  for (const m of incoming) bySeq.set(m.seq, { ...bySeq.get(m.seq), ...m });
  return Array.from(bySeq.values()).sort((a, b) => a.seq - b.seq);
}
