// Shared pieces: images with placeholders, avatars, error lines, paginated lists.
import { FormEvent, ReactNode, useCallback, useEffect, useRef, useState } from "react";
import { ApiError, get, Id, Media, Page, smallestUrl, srcset, UserBrief } from "./api";
import { Link } from "./router";
import { me, useStore } from "./state";
import { userById } from "./users";

export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    const fields = Object.entries(e.fields);
    const said = e.message.toLowerCase();  // a message that names a field, or says its words, says it once
    if (fields.length && !fields.every(([k, v]) => said.includes(v.toLowerCase()) || said.includes(k.toLowerCase()))) {
      return `${e.message} ${fields.map(([k, v]) => `${k}: ${v}`).join(" ")}`;
    }
    return e.message;
  }
  return e instanceof Error ? e.message : String(e);
}

export function ErrorLine({ error }: { error: unknown }) {
  if (!error) return null;
  return <p className="error" role="alert">{errorText(error)}</p>;
}

/** A photo from its renditions: srcset, and its average colour until it loads. */
export function Photo({ media, alt, sizes = "(max-width: 640px) 100vw, 600px", className }: {
  media: Media; alt: string; sizes?: string; className?: string;
}) {
  const [loaded, setLoaded] = useState(false);
  const { src, srcSet } = srcset(media);
  const ratio = media.width && media.height ? `${media.width} / ${media.height}` : "1 / 1";
  return (
    <div className={"photo " + (className ?? "") + (loaded ? " loaded" : "")}
      style={{ aspectRatio: ratio, background: media.placeholder || "#ddd" }}>
      {media.kind === "video"
        ? <video src={src} controls aria-label={alt} />
        : <img src={src} srcSet={srcSet || undefined} sizes={sizes} alt={alt} loading="lazy" decoding="async"
            onLoad={() => setLoaded(true)} />}
    </div>
  );
}

const avatarCache = new Map<Id, Promise<Media | null>>();

export function mediaById(id: Id): Promise<Media | null> {
  let p = avatarCache.get(id);
  if (!p) {
    p = get<Media>(`/api/media/${id}/`).catch(() => null);
    avatarCache.set(id, p);
  }
  return p;
}

type AvatarUser = Pick<UserBrief, "username"> & { id?: Id; avatar_media_id?: Id | null; avatar_url?: string | null };

/** The avatar's media id, where the brief has no link of its own: the viewer's own from the
 * signed-in profile (so a new photo shows at once), the brief's `avatar_media_id` when it carries
 * one (null: none), else the profile's, fetched once per page load. */
function useAvatarId(user: AvatarUser, linked: boolean): Id | null {
  const viewer = useStore(me);
  const own = !!user.id && viewer?.id === user.id;
  const known = own ? viewer!.avatar_media_id : linked ? null : user.avatar_media_id;
  const [looked, setLooked] = useState<Id | null>(null);
  useEffect(() => {
    setLooked(null);
    if (known !== undefined || !user.id) return;
    let live = true;
    userById(user.id).then((p) => { if (live) setLooked(p?.avatar_media_id ?? null); });
    return () => { live = false; };
  }, [user.id, known]);
  return known !== undefined ? known : looked;
}

/** A round avatar: the brief's `avatar_url` (lists the server renders carry it), else the photo's
 * smallest rendition by its media id, or the username's initial while there is none. */
export function Avatar({ user, size = 32, online }: { user: AvatarUser; size?: number; online?: boolean }) {
  const viewer = useStore(me);
  const linked = user.avatar_url !== undefined && !(user.id && viewer?.id === user.id);
  const mediaId = useAvatarId(user, linked);
  const [looked, setLooked] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    setLooked(null);
    if (mediaId) {
      mediaById(mediaId).then((m) => {
        if (!live || !m) return;
        setLooked(smallestUrl(m));
      });
    }
    return () => { live = false; };
  }, [mediaId]);
  const url = linked ? user.avatar_url ?? null : looked;
  const letter = (user.username || "?")[0].toUpperCase();
  return (
    <span className="avatar" style={{ width: size, height: size, fontSize: size / 2.4 }} aria-hidden="true">
      {url ? <img src={url} alt="" /> : letter}
      {online !== undefined && <span className={"dot " + (online ? "on" : "off")} />}
    </span>
  );
}

export function UserLink({ user }: { user: UserBrief }) {
  return (
    <Link to={`/u/${user.id}`} className="user-link">
      <Avatar user={user} /> <strong>{user.username}</strong>
      {user.is_verified && <span className="verified" title="verified" aria-label="verified">✓</span>}
    </Link>
  );
}

export function timeAgo(iso: string | undefined): string {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return "now";
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** A form's submit: `busy` while `act` runs, and what it threw as `error` (cleared on each try;
 * `failed` may say what to show instead, null for nothing). */
export function useSubmit(act: () => Promise<void>, failed: (err: unknown) => unknown = (err) => err) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await act();
    } catch (err) {
      setError(failed(err));
    } finally {
      setBusy(false);
    }
  }

  return { submit, busy, error };
}

/** A cursor-paginated list that loads the next page when its end scrolls into view. */
export function usePaged<T>(first: string | null) {
  const [items, setItems] = useState<T[]>([]);
  const [next, setNext] = useState<string | null>(first);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState(false);
  const busy = useRef(false);

  useEffect(() => { setItems([]); setNext(first); setDone(false); setError(null); }, [first]);

  const more = useCallback(async () => {
    if (busy.current || !next) return;
    busy.current = true;
    setLoading(true);
    try {
      const page = await get<Page<T>>(next);
      setItems((old) => [...old, ...page.results]);
      setNext(page.next);
      if (!page.next) setDone(true);
      setError(null);
    } catch (e) {
      setError(e);
    } finally {
      busy.current = false;
      setLoading(false);
    }
  }, [next]);

  useEffect(() => { if (next && items.length === 0 && !error) more(); }, [next, items.length, error, more]);

  return { items, setItems, more, loading, error, done: done || !next };
}

export function Sentinel({ onVisible, active }: { onVisible: () => void; active: boolean }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!active || !ref.current || typeof IntersectionObserver === "undefined") return;
    const io = new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) onVisible(); },
      { rootMargin: "600px" });
    io.observe(ref.current);
    return () => io.disconnect();
  }, [onVisible, active]);
  return <div ref={ref} className="sentinel" aria-hidden="true" />;
}

export function Paged<T>({ first, render, empty, keyOf }: {
  first: string; render: (item: T) => ReactNode; empty?: ReactNode; keyOf: (item: T) => string;
}) {
  const { items, more, loading, error, done } = usePaged<T>(first);
  return (
    <>
      {items.map((i) => <div key={keyOf(i)}>{render(i)}</div>)}
      {!loading && done && !items.length && !error && (empty ?? <p className="muted">Nothing here yet.</p>)}
      <ErrorLine error={error} />
      {loading && <p className="muted" role="status">Loading…</p>}
      <Sentinel onVisible={more} active={!done && !loading && !error} />
    </>
  );
}

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/** A dialog over the page: focus moves into it (unless something in it took focus already),
 * Tab stays inside it, Escape or a click outside closes it, and focus returns to what opened it. */
export function Modal({ title, onClose, children }: { title: string; onClose: () => void; children: ReactNode }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const key = (e: KeyboardEvent) => { if (e.key === "Escape") onClose(); };
    window.addEventListener("keydown", key);
    return () => window.removeEventListener("keydown", key);
  }, [onClose]);
  useEffect(() => {
    const opener = document.activeElement as HTMLElement | null;
    if (box.current && !box.current.contains(document.activeElement)) box.current.focus();
    return () => { if (opener && opener.isConnected) opener.focus(); };
  }, []);
  function trap(e: React.KeyboardEvent) {
    if (e.key !== "Tab" || !box.current) return;
    const list = Array.from(box.current.querySelectorAll<HTMLElement>(FOCUSABLE));
    if (!list.length) return;
    const first = list[0], last = list[list.length - 1];
    if (e.shiftKey && (document.activeElement === first || document.activeElement === box.current)) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
  }
  return (
    <div className="modal-back" onClick={onClose}>
      <div className="modal" role="dialog" aria-modal="true" aria-label={title} tabIndex={-1} ref={box} onKeyDown={trap}
        onClick={(e) => e.stopPropagation()}>
        <header><h2>{title}</h2><button className="icon" aria-label="Close" onClick={onClose}>✕</button></header>
        {children}
      </div>
    </div>
  );
}
