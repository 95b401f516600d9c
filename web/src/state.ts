// What the whole app shares: the signed-in user, the unread notification and message counts, a
// one-off notice, the connection.
import { useEffect, useState, useSyncExternalStore } from "react";
import { Conversation, get, Id, Message, Page, Profile, tokens } from "./api";
import { realtime, Status } from "./socket";

type Listener = () => void;

function store<T>(initial: T) {
  let value = initial;
  const listeners = new Set<Listener>();
  return {
    get: () => value,
    set(v: T) { value = v; listeners.forEach((l) => l()); },
    subscribe(l: Listener) { listeners.add(l); return () => { listeners.delete(l); }; },
  };
}

export const me = store<Profile | null>(null);
export const unread = store<number>(0);
/** Unread messages per conversation with any (the Messages badge counts the conversations). */
export const unreadMessages = store<Record<Id, number>>({});
/** A note for the page `at` (e.g. "You blocked …"), shown by the shell until dismissed or left. */
export interface Notice { text: string; at: string; link?: { to: string; label: string } }
export const notice = store<Notice | null>(null);

export function useStore<T>(s: { get: () => T; subscribe: (l: Listener) => () => void }): T {
  return useSyncExternalStore(s.subscribe, s.get);
}

export async function loadMe(): Promise<Profile | null> {
  if (!tokens.access) { me.set(null); return null; }
  try {
    const profile = await get<Profile>("/api/accounts/users/me/");
    me.set(profile);
    return profile;
  } catch {
    me.set(null);
    return null;
  }
}

export async function refreshUnread() {
  try {
    const r = await get<{ unread_count: number }>("/api/notifications/unread-count/");
    unread.set(r.unread_count);
  } catch { /* keep the last count */ }
}

/** The unread counts from the conversations list (inbox and requests), as after a reload. */
export async function refreshUnreadMessages() {
  try {
    const pages = await Promise.all(["inbox", "requests"].map((folder) =>
      get<Page<Conversation>>(`/api/conversations/?folder=${folder}&limit=100`)));
    setUnreadMessages(pages.flatMap((p) => p.results));
  } catch { /* keep the last counts */ }
}

/** The newest message counted live, by conversation: a list read before it arrived is older news. */
const countedSeq: Record<Id, number> = {};

/** Take the unread counts of these conversations as the server listed them, except where a
 * message counted live is newer than the list (it was read before the message was sent, and its
 * answer came after the message's frame). */
export function setUnreadMessages(list: Pick<Conversation, "id" | "unread_count" | "last_seq">[]) {
  const next = { ...unreadMessages.get() };
  for (const c of list) {
    if (c.last_seq < (countedSeq[c.id] ?? 0)) continue;
    // the open conversation is being read as the list loads
    if (c.unread_count > 0 && location.pathname !== `/direct/${c.id}`) next[c.id] = c.unread_count;
    else delete next[c.id];
  }
  unreadMessages.set(next);
}

/** A message arrived live: one more unread, unless it is the viewer's own or its conversation is open. */
export function countNewMessage(message: Message) {
  if (message.sender_id === me.get()?.id) return;
  if (location.pathname === `/direct/${message.conversation_id}`) return;
  if (message.seq <= (countedSeq[message.conversation_id] ?? 0)) return;  // counted already
  countedSeq[message.conversation_id] = message.seq;
  const counts = unreadMessages.get();
  unreadMessages.set({ ...counts, [message.conversation_id]: (counts[message.conversation_id] ?? 0) + 1 });
}

/** The viewer read a conversation: it no longer counts. */
export function clearUnreadMessages(conversationId: Id) {
  const counts = unreadMessages.get();
  if (!(conversationId in counts)) return;
  const next = { ...counts };
  delete next[conversationId];
  unreadMessages.set(next);
}

export function useConnection(): Status {
  const [status, setStatus] = useState<Status>(realtime.status);
  useEffect(() => realtime.onStatus(setStatus), []);
  return status;
}
