// The public API (see API.md): JSON requests with the bearer token, refreshed once on a 401.

export type Id = string;

export interface ApiErrorBody {
  code: string;
  message: string;
  fields?: Record<string, string>;
}

export class ApiError extends Error {
  status: number;
  code: string;
  fields: Record<string, string>;
  constructor(status: number, body: ApiErrorBody) {
    super(body.message);
    this.status = status;
    this.code = body.code;
    this.fields = body.fields ?? {};
  }
}

export interface Page<T> {
  results: T[];
  next: string | null;
}

export interface Rendition { width: number | null; height: number | null }
/** `url` is a signed link that a rendition's name completes: `url + "320.webp"`. */
export interface Media {
  id: Id; kind: string; content_type?: string; width: number | null; height: number | null;
  placeholder?: string; url: string; renditions: Record<string, Rendition>;
}
/** A user as lists name them; `avatar_url` a signed link to the avatar's smallest WebP (null: none),
 * on every list the server renders (profiles give `avatar_media_id` instead). */
export interface UserBrief {
  id: Id; username: string; full_name: string; is_verified: boolean; avatar_media_id?: Id | null; avatar_url?: string | null;
}
export interface Relationship { following: boolean; followed_by: boolean; requested: boolean; blocking: boolean; muting?: boolean }
export interface Profile extends UserBrief {
  bio: string; website: string; avatar_media_id: Id | null; is_private: boolean;
  posts_count: number; followers_count: number; following_count: number; created_at: string;
  relationship?: Relationship; role?: string;
}
export interface Post {
  id: Id; author: UserBrief; caption: string; media: Media[]; hashtags: string[];
  location: { id: Id; name: string } | null; like_count: number; comment_count: number;
  liked: boolean; saved: boolean; created_at: string; edited_at: string | null;
}
export interface Comment {
  id: Id; post_id: Id; parent_id: Id | null; author: UserBrief; text: string;
  like_count: number; reply_count: number; liked: boolean; created_at: string;
}
export interface Story {
  id: Id; owner_id: Id; media: Media | null; caption: string; close_friends_only: boolean;
  created_at: string; expires_at: string; seen: boolean; view_count?: number | null;
}
export interface TrayEntry { user: UserBrief; has_unseen: boolean; latest_at: string; stories: Story[] }
export interface Share { type: "post" | "story" | "user"; id: Id; available?: boolean; [k: string]: unknown }
export interface Message {
  id: Id; conversation_id: Id; seq: number; sender_id: Id; client_id: string; text: string;
  media: Media | null; reply_to_seq: number | null; deleted?: boolean; created_at: string;
  reactions?: { user_id: Id; emoji: string }[]; edited_at?: string | null; share?: Share | null;
}
/** A listed conversation: `users` are up to 3 members besides the viewer (joining order, then id)
 * whom the viewer may be shown; `member_ids` names everyone. */
export interface Conversation {
  id: Id; kind: string; title: string; member_ids: Id[]; users: UserBrief[]; last_seq: number; read_seq: number;
  unread_count: number; last_message: Message | null; last_message_at: string;
}
/** A member of a conversation's detail; `user` null for one the viewer may not be shown. */
export interface Member { user_id: Id; user: UserBrief | null; read_seq: number; delivered_seq: number }
export interface ConversationDetail extends Omit<Conversation, "member_ids" | "users" | "last_message"> { members: Member[] }
export interface Notification {
  id: Id; kind: string; actors: UserBrief[]; actor_count: number; count?: number;
  target: { type: string; id: Id; post_id?: Id | null }; created_at?: string; updated_at?: string; read: boolean;
}

const ACCESS = "glint.access";
const REFRESH = "glint.refresh";

type Listener = () => void;
const authListeners = new Set<Listener>();

export const tokens = {
  get access(): string | null { return localStorage.getItem(ACCESS); },
  get refresh(): string | null { return localStorage.getItem(REFRESH); },
  set(pair: { access: string; refresh: string } | null) {
    if (pair) {
      localStorage.setItem(ACCESS, pair.access);
      localStorage.setItem(REFRESH, pair.refresh);
    } else {
      localStorage.removeItem(ACCESS);
      localStorage.removeItem(REFRESH);
    }
    authListeners.forEach((l) => l());
  },
  subscribe(l: Listener): () => void { authListeners.add(l); return () => authListeners.delete(l); },
};

let refreshing: Promise<boolean> | null = null;

/** Spend the refresh token for a new pair; false (and logged out) if it was refused. */
export function refreshTokens(): Promise<boolean> {
  if (!refreshing) {
    refreshing = (async () => {
      const refresh = tokens.refresh;
      if (!refresh) return false;
      try {
        const r = await fetch("/api/token/refresh/", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refresh }),
        });
        if (r.ok) { tokens.set(await r.json()); return true; }
        if (r.status === 401 || r.status === 400) tokens.set(null);
        return false;
      } catch {
        return false;
      }
    })().finally(() => { refreshing = null; });
  }
  return refreshing;
}

async function errorOf(r: Response): Promise<ApiError> {
  try {
    const body = await r.json();
    if (body && body.error) return new ApiError(r.status, body.error);
  } catch { /* not JSON */ }
  return new ApiError(r.status, { code: "http_" + r.status, message: r.statusText || "Request failed." });
}

/** A JSON request to the API; throws ApiError with the API's own words. */
export async function api<T = unknown>(method: string, path: string, body?: unknown, retried = false): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const access = tokens.access;
  if (access) headers.Authorization = `Bearer ${access}`;
  let r: Response;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, { code: "network_error", message: "Can't reach glint. Check your connection." });
  }
  if (r.status === 401 && access && !retried && path !== "/api/token/") {
    if (await refreshTokens()) return api<T>(method, path, body, true);
  }
  if (!r.ok) throw await errorOf(r);
  if (r.status === 204 || r.headers.get("Content-Length") === "0") return undefined as T;
  const text = await r.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const get = <T>(path: string) => api<T>("GET", path);
export const post = <T>(path: string, body?: unknown) => api<T>("POST", path, body ?? {});
export const put = <T>(path: string, body?: unknown) => api<T>("PUT", path, body ?? {});
export const patch = <T>(path: string, body?: unknown) => api<T>("PATCH", path, body ?? {});
export const del = <T>(path: string, body?: unknown) => api<T>("DELETE", path, body);

/** Upload a file to /api/media/ with progress (0..1) reported as it goes. */
export function upload(file: Blob, onProgress: (fraction: number) => void, retried = false): Promise<Media> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/media/");
    const access = tokens.access;
    if (access) xhr.setRequestHeader("Authorization", `Bearer ${access}`);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onerror = () => reject(new ApiError(0, { code: "network_error", message: "Upload failed: can't reach glint." }));
    xhr.onload = async () => {
      let body: any = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 401 && !retried && (await refreshTokens())) {
        upload(file, onProgress, true).then(resolve, reject);
      } else if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(body as Media);
      } else {
        reject(new ApiError(xhr.status, body?.error ?? { code: "http_" + xhr.status, message: "Upload failed." }));
      }
    };
    const form = new FormData();
    form.append("file", file);
    xhr.send(form);
  });
}

/** The URL of one of a media item's files ("320.webp", "original"). */
export function fileUrl(media: Media, name: string): string {
  return media.url + name;
}

/** A media item's renditions in one format (WebP, else JPEG), smallest first, as [name, width]. */
function widths(media: Media): [string, number][] {
  const names = Object.keys(media.renditions);
  const ext = names.some((n) => n.endsWith(".webp")) ? ".webp" : ".jpg";
  return names.filter((n) => n.endsWith(ext) && media.renditions[n].width)
    .map((n): [string, number] => [n, media.renditions[n].width!]).sort((a, b) => a[1] - b[1]);
}

/** The srcset of a media item's renditions, smallest first. */
export function srcset(media: Media): { src: string; srcSet: string } {
  const list = widths(media);
  if (!list.length) {
    const any = Object.keys(media.renditions)[0];
    return { src: any ? fileUrl(media, any) : "", srcSet: "" };
  }
  return { src: fileUrl(media, list[list.length - 1][0]),
           srcSet: list.map(([name, w]) => `${fileUrl(media, name)} ${w}w`).join(", ") };
}

/** The URL of a media item's smallest rendition (a thumbnail), or null. */
export function smallestUrl(media: Media): string | null {
  const list = widths(media);
  const name = list.length ? list[0][0] : Object.keys(media.renditions)[0];
  return name ? fileUrl(media, name) : null;
}

export function newClientId(): string {
  return (crypto as any).randomUUID ? crypto.randomUUID() : Math.random().toString(36).slice(2) + Date.now().toString(36);
}
