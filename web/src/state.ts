// What the whole app shares: the signed-in user, the unread notification count, a one-off
// notice, the connection.
import { useEffect, useState, useSyncExternalStore } from "react";
import { get, Profile, tokens } from "./api";
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

export function useConnection(): Status {
  const [status, setStatus] = useState<Status>(realtime.status);
  useEffect(() => realtime.onStatus(setStatus), []);
  return status;
}
