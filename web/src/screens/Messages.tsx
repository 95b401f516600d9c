// Direct messages: the inbox and requests, and a conversation with live messages, typing,
// delivered/read receipts, presence, reactions, edits, replies and shares. Nothing is lost or
// shown twice across a reconnect: history and live frames merge by seq, the socket resumes by
// `sync`, and a message sent while offline goes out again with the same client_id.
import { FormEvent, useEffect, useMemo, useRef, useState } from "react";
import { Conversation, ConversationDetail, del, get, Id, Member, Message, newClientId, Page, post, upload, UserBrief } from "../api";
import { Icon } from "../icons";
import { Link, navigate } from "../router";
import { Frame, mergeMessages, realtime } from "../socket";
import { clearUnreadMessages, me, setUnreadMessages, useStore } from "../state";
import { Avatar, ErrorLine, Photo, timeAgo } from "../ui";
import { ReportDialog } from "./Profile";

const REACTIONS = ["❤️", "😂", "😮", "👍"];
const EDIT_WINDOW_MS = 15 * 60 * 1000;

function usePresence(ids: Id[]): Record<Id, boolean> {
  const [online, setOnline] = useState<Record<Id, boolean>>({});
  const key = ids.join(",");
  useEffect(() => {
    if (ids.length) realtime.watchPresence(ids);
    return realtime.on("presence", (f) => setOnline((o) => ({ ...o, [f.user_id]: f.status === "online" })));
  }, [key]);
  return online;
}

/** A group's own title, else the names the server gave ("ana, ben and 3 others": `others` counts
 * every member besides the viewer, named or not). */
export function title(c: { title: string }, named: UserBrief[], others: number): string {
  if (c.title) return c.title;
  const names = named.slice(0, 3).map((u) => u.username);
  if (!names.length) return "Conversation";
  const rest = others - names.length;
  if (rest > 0) return `${names.join(", ")} and ${rest} ${rest === 1 ? "other" : "others"}`;
  return names.length === 1 ? names[0] : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

function preview(m: Message | null): string {
  if (!m) return "No messages yet";
  if (m.deleted) return "Message removed";
  if (m.share) return `Shared a ${m.share.type}`;
  if (m.media && !m.text) return "Photo";
  return m.text;
}

export function Inbox({ folder }: { folder: "inbox" | "requests" }) {
  const viewer = useStore(me);
  const [list, setList] = useState<Conversation[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [q, setQ] = useState("");
  const [found, setFound] = useState<UserBrief[]>([]);

  const load = () => get<Page<Conversation>>(`/api/conversations/?folder=${folder}&limit=50`).then((p) => { setList(p.results); setUnreadMessages(p.results); setError(null); }, setError);
  useEffect(() => {
    load();
    const offs = [realtime.on("message.new", load), realtime.on("hello", load), realtime.on("message.read", load)];
    return () => offs.forEach((off) => off());
  }, [folder]);
  useEffect(() => {
    if (!q.trim()) { setFound([]); return; }
    const t = setTimeout(() => get<Page<UserBrief>>(`/api/search/users/?q=${encodeURIComponent(q)}&limit=6`).then((p) => setFound(p.results), () => {}), 200);
    return () => clearTimeout(t);
  }, [q]);

  // the face each row draws is its first named member: theirs is the presence it shows
  const faces = Array.from(new Set(list.flatMap((c) => c.users.slice(0, 1).map((u) => u.id))));
  const online = usePresence(faces);

  async function start(u: UserBrief) {
    try {
      const c = await post<{ id: string }>("/api/conversations/", { member_ids: [u.id] });
      navigate(`/direct/${c.id}`);
    } catch (e) { setError(e); }
  }

  return (
    <main className="page inbox">
      <h1>Messages</h1>
      <div className="tabs" role="tablist">
        <Link role="tab" aria-selected={folder === "inbox"} to="/direct">Inbox</Link>
        <Link role="tab" aria-selected={folder === "requests"} to="/direct/requests">Requests</Link>
      </div>
      <label>New message<input value={q} onChange={(e) => setQ(e.target.value)} placeholder="Search people" /></label>
      <ul className="plain">{found.map((u) => <li key={u.id}><button onClick={() => start(u)}>Message {u.username}</button></li>)}</ul>
      <ErrorLine error={error} />
      <ul className="plain conversations">
        {list.map((c) => {
          const others = c.member_ids.filter((id) => id !== viewer?.id).length;
          const first = c.users[0];
          return (
            <li key={c.id}>
              <Link to={`/direct/${c.id}${folder === "requests" ? "?request=1" : ""}`} className={"conversation" + (c.unread_count ? " unread" : "")}>
                {first ? <Avatar user={first} size={44} online={!!online[first.id]} /> : <span className="avatar" style={{ width: 44, height: 44 }} />}
                <span className="grow">
                  <strong>{title(c, c.users, others)}</strong>
                  <span className="muted small block">{preview(c.last_message)} · {timeAgo(c.last_message_at)}</span>
                </span>
                {c.unread_count > 0 && <span className="badge" aria-label={`${c.unread_count} unread`}>{c.unread_count}</span>}
              </Link>
            </li>
          );
        })}
      </ul>
      {!list.length && !error && <p className="muted">{folder === "requests" ? "No message requests." : "No conversations yet."}</p>}
    </main>
  );
}

function ShareView({ share }: { share: NonNullable<Message["share"]> }) {
  if (share.available === false) return <p className="share unavailable">This {share.type} is unavailable.</p>;
  const to = share.type === "post" ? `/p/${share.id}` : share.type === "user" ? `/u/${share.id}` : "#";
  const label = (share as any).caption || (share as any).username || `a ${share.type}`;
  return <Link className="share" to={to}>Shared {share.type}: {String(label).slice(0, 80)}</Link>;
}

interface Pending { client_id: string; text: string; media_id?: string; reply_to_seq?: number; failed?: string }

export function ConversationPage({ id, request }: { id: string; request: boolean }) {
  const viewer = useStore(me);
  const [detail, setDetail] = useState<ConversationDetail | null>(null);
  const [messages, setMessages] = useState<Message[]>([]);
  const [pending, setPending] = useState<Pending[]>([]);
  const [text, setText] = useState("");
  const [replyTo, setReplyTo] = useState<Message | null>(null);
  const [editing, setEditing] = useState<Message | null>(null);
  const [picker, setPicker] = useState<number | null>(null);
  const [typing, setTyping] = useState<Record<Id, number>>({});
  const [error, setError] = useState<unknown>(null);
  const [older, setOlder] = useState(true);
  const [reporting, setReporting] = useState<Message | null>(null);
  const [progress, setProgress] = useState<number | null>(null);
  const lastTyping = useRef(0);
  const bottom = useRef<HTMLDivElement>(null);

  const members: Member[] = detail?.members ?? [];
  const otherIds = members.map((m) => m.user_id).filter((u) => u !== viewer?.id);
  // each member's brief comes with the detail (none for one the viewer may not be shown)
  const users: Record<Id, UserBrief> = Object.fromEntries(members.flatMap((m) => m.user ? [[m.user_id, m.user]] : []));
  const online = usePresence(otherIds);

  const loadDetail = () => get<ConversationDetail>(`/api/conversations/${id}/`).then(setDetail, setError);

  useEffect(() => {
    setMessages([]); setPending([]); setDetail(null); setOlder(true);
    loadDetail();
    get<Page<Message> | { results: Message[] }>(`/api/conversations/${id}/messages/?limit=50`).then((p) => {
      const list = p.results;
      list.forEach((m) => realtime.seen(id, m.seq));
      setMessages((old) => mergeMessages(old, list));
      if (list.length < 50) setOlder(false);
    }, setError);
    const mine = (f: Frame) => (f.conversation_id ?? f.message?.conversation_id) === id;
    const offs = [
      realtime.on("message.new", (f) => {
        if (!mine(f)) return;
        setMessages((old) => mergeMessages(old, [f.message]));
        setPending((p) => p.filter((x) => x.client_id !== f.message.client_id));
        // their message arrived: they are no longer typing it
        setTyping((t) => { if (!(f.message.sender_id in t)) return t; const { [f.message.sender_id]: _, ...rest } = t; return rest; });
      }),
      realtime.on("message.ack", (f) => { if (mine(f)) { setMessages((old) => mergeMessages(old, [f.message])); setPending((p) => p.filter((x) => x.client_id !== f.message.client_id)); } }),
      realtime.on("message.edited", (f) => { if (mine(f)) setMessages((old) => mergeMessages(old, [f.message])); }),
      realtime.on("message.reaction", (f) => {
        if (!mine(f)) return;
        setMessages((old) => old.map((m) => m.seq !== f.seq ? m : {
          ...m, reactions: [...(m.reactions ?? []).filter((r) => r.user_id !== f.user_id), ...(f.emoji ? [{ user_id: f.user_id, emoji: f.emoji }] : [])],
        }));
      }),
      realtime.on("message.delivered", (f) => { if (mine(f)) setDetail((d) => d && { ...d, members: d.members.map((m) => m.user_id === f.user_id ? { ...m, delivered_seq: Math.max(m.delivered_seq, f.seq) } : m) }); }),
      realtime.on("message.read", (f) => { if (mine(f)) setDetail((d) => d && { ...d, members: d.members.map((m) => m.user_id === f.user_id ? { ...m, read_seq: Math.max(m.read_seq, f.seq), delivered_seq: Math.max(m.delivered_seq, f.seq) } : m) }); }),
      realtime.on("typing", (f) => { if (mine(f) && f.user_id !== me.get()?.id) setTyping((t) => ({ ...t, [f.user_id]: Date.now() })); }),
      realtime.on("hello", () => loadDetail()),
      realtime.on("error", (f) => { if (f.ref) setError(new Error(f.message)); }),
    ];
    return () => offs.forEach((off) => off());
  }, [id]);

  // typing notices fade after 4 s
  useEffect(() => {
    if (!Object.keys(typing).length) return;
    const t = setTimeout(() => setTyping((old) => Object.fromEntries(Object.entries(old).filter(([, at]) => Date.now() - at < 4000))), 1000);
    return () => clearTimeout(t);
  }, [typing]);

  // read up to the newest message while the conversation is open
  const newest = messages.length ? messages[messages.length - 1].seq : 0;
  useEffect(() => {
    if (!newest || document.hidden) return;
    clearUnreadMessages(id);
    if (!realtime.send({ type: "message.read", conversation_id: id, seq: newest })) post(`/api/conversations/${id}/read/`, { seq: newest }).catch(() => {});
  }, [newest, id]);

  useEffect(() => { bottom.current?.scrollIntoView?.({ block: "end" }); }, [messages.length, pending.length]);

  async function loadOlder() {
    const first = messages[0]?.seq;
    if (!first) return;
    const p = await get<{ results: Message[] }>(`/api/conversations/${id}/messages/?before_seq=${first}&limit=50`);
    setMessages((old) => mergeMessages(old, p.results));
    if (p.results.length < 50) setOlder(false);
  }

  function send(body: Omit<Pending, "client_id">) {
    const client_id = newClientId();
    setPending((p) => [...p, { client_id, ...body }]);
    realtime.sendMessage({ conversation_id: id, client_id, text: body.text, media_id: body.media_id, reply_to_seq: body.reply_to_seq });
  }

  function submit(e: FormEvent) {
    e.preventDefault();
    const value = text.trim();
    if (!value) return;
    if (editing) {
      realtime.send({ type: "message.edit", conversation_id: id, seq: editing.seq, text: value });
      setEditing(null);
    } else {
      send({ text: value, reply_to_seq: replyTo?.seq });
      setReplyTo(null);
    }
    setText("");
  }

  function onType(value: string) {
    setText(value);
    const now = Date.now();
    if (value && now - lastTyping.current > 2000) {
      lastTyping.current = now;
      realtime.send({ type: "typing", conversation_id: id });
    }
  }

  async function sendPhoto(file: File | undefined) {
    if (!file) return;
    try {
      setProgress(0);
      const media = await upload(file, setProgress);
      send({ text: "", media_id: media.id });
    } catch (e) { setError(e); } finally { setProgress(null); }
  }

  function react(m: Message, emoji: string) {
    const current = m.reactions?.find((r) => r.user_id === viewer?.id)?.emoji;
    if (current === emoji) realtime.send({ type: "message.unreact", conversation_id: id, seq: m.seq });
    else realtime.send({ type: "message.react", conversation_id: id, seq: m.seq, emoji });
    setPicker(null);
  }

  async function answerRequest(accept: boolean) {
    try {
      if (accept) { await post(`/api/conversations/${id}/accept/`); navigate(`/direct/${id}`, true); }
      else { await del(`/api/conversations/${id}/`); navigate("/direct/requests", true); }
    } catch (e) { setError(e); }
  }

  const bySeq = useMemo(() => new Map(messages.map((m) => [m.seq, m])), [messages]);
  const lastMine = [...messages].reverse().find((m) => m.sender_id === viewer?.id);
  const others = members.filter((m) => m.user_id !== viewer?.id);
  const receipt = lastMine && others.length
    ? others.every((m) => m.read_seq >= lastMine.seq) ? "Seen"
      : others.every((m) => m.delivered_seq >= lastMine.seq) ? "Delivered" : "Sent"
    : null;
  const typers = Object.keys(typing).map((u) => users[u]?.username ?? "Someone");
  const name = detail ? title(detail, otherIds.flatMap((u) => users[u] ? [users[u]] : []), otherIds.length) : "";

  return (
    <main className="page chat">
      <header className="chat-head">
        <Link to="/direct" aria-label="Back to messages">‹</Link>
        {otherIds[0] && users[otherIds[0]] && <Avatar user={users[otherIds[0]]} online={!!online[otherIds[0]]} />}
        <h1>{name}</h1>
        {otherIds.length === 1 && <span className="muted small" aria-live="polite">{online[otherIds[0]] ? "Active now" : ""}</span>}
      </header>
      {request && (
        <div className="request-bar" role="region" aria-label="Message request">
          <p>This is a message request. They won't know you've seen it until you accept.</p>
          <button className="primary" onClick={() => answerRequest(true)}>Accept</button> <button onClick={() => answerRequest(false)}>Decline</button>
        </div>
      )}
      <ErrorLine error={error} />
      <ol className="messages" aria-label="Messages" aria-live="polite">
        {older && messages.length > 0 && <li><button className="link" onClick={loadOlder}>Load older messages</button></li>}
        {messages.map((m) => {
          const own = m.sender_id === viewer?.id;
          const quoted = m.reply_to_seq ? bySeq.get(m.reply_to_seq) : undefined;
          const canEdit = own && !m.deleted && !!m.text && !m.share && Date.now() - new Date(m.created_at).getTime() < EDIT_WINDOW_MS;
          return (
            <li key={m.seq} className={"message" + (own ? " own" : "")} data-seq={m.seq}>
              {!own && users[m.sender_id] && <span className="sender small muted">{users[m.sender_id].username}</span>}
              <div className="bubble">
                {m.reply_to_seq && <p className="quote small">↩ {quoted ? (quoted.text || "Photo") : `message ${m.reply_to_seq}`}</p>}
                {m.deleted ? <em className="muted">Message removed</em> : (
                  <>
                    {m.media && <Photo media={m.media} alt="Photo in the conversation" sizes="240px" />}
                    {m.share && <ShareView share={m.share} />}
                    {m.text && <span className="text">{m.text}</span>}
                    {m.edited_at && <span className="small muted"> (edited)</span>}
                  </>
                )}
              </div>
              {!!m.reactions?.length && <span className="reactions" aria-label="Reactions">{m.reactions.map((r) => r.emoji).join(" ")}</span>}
              {!m.deleted && (
                <span className="message-tools">
                  <button className="link small" aria-label={`React to message ${m.seq}`} onClick={() => setPicker(picker === m.seq ? null : m.seq)}>☺</button>
                  <button className="link small" aria-label={`Reply to message ${m.seq}`} onClick={() => setReplyTo(m)}>↩</button>
                  {canEdit && <button className="link small" aria-label={`Edit message ${m.seq}`} onClick={() => { setEditing(m); setText(m.text); }}>✎</button>}
                  {!own && <button className="link small" aria-label={`Report message ${m.seq}`} onClick={() => setReporting(m)}>⚑</button>}
                </span>
              )}
              {picker === m.seq && (
                <span className="picker" role="group" aria-label="Pick a reaction">
                  {REACTIONS.map((e) => <button key={e} className="icon" aria-label={`React ${e}`} onClick={() => react(m, e)}>{e}</button>)}
                </span>
              )}
            </li>
          );
        })}
        {pending.map((p) => (
          <li key={p.client_id} className="message own pending" data-client-id={p.client_id}>
            <div className="bubble">{p.text || "Photo"}</div>
            <span className="small muted">Sending…</span>
          </li>
        ))}
      </ol>
      {receipt && !pending.length && <p className="receipt small muted" aria-live="polite">{receipt}</p>}
      <p className="typing small muted" aria-live="polite">{typers.length ? `${typers.join(", ")} ${typers.length > 1 ? "are" : "is"} typing…` : ""}</p>
      <div ref={bottom} />
      <form className="composer-bar inline" onSubmit={submit}>
        {replyTo && <span className="small muted">Replying to “{(replyTo.text || "Photo").slice(0, 40)}” <button type="button" className="link" onClick={() => setReplyTo(null)}>cancel</button></span>}
        {editing && <span className="small muted">Editing <button type="button" className="link" onClick={() => { setEditing(null); setText(""); }}>cancel</button></span>}
        <label className="file icon"><Icon name="camera" /><span className="sr-only">Send a photo</span><input type="file" accept="image/*" onChange={(e) => { sendPhoto(e.target.files?.[0]); e.target.value = ""; }} /></label>
        {progress !== null && <progress max={1} value={progress} aria-label="Photo upload" />}
        <label className="grow"><span className="sr-only">Message</span>
          <input name="message" value={text} onChange={(e) => onType(e.target.value)} placeholder="Message…" maxLength={4000} autoComplete="off" />
        </label>
        <button className="primary">{editing ? "Save" : "Send"}</button>
      </form>
      {reporting && <ReportDialog target={{ type: "message", id: reporting.id }} onClose={() => setReporting(null)} />}
    </main>
  );
}
