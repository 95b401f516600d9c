// The stories tray, the full-screen viewer (progress bars, replies and reactions into DMs,
// who viewed mine) and the close friends list.
import { FormEvent, useCallback, useEffect, useState } from "react";
import { get, Page, post, put, Story, TrayEntry, UserBrief } from "../api";
import { me, useStore } from "../state";
import { Avatar, ErrorLine, Modal, Photo, timeAgo } from "../ui";

const STORY_MS = 5000;

export function StoriesTray() {
  const user = useStore(me);
  const [tray, setTray] = useState<TrayEntry[]>([]);
  const [mine, setMine] = useState<Story[]>([]);
  const [open, setOpen] = useState<{ entries: TrayEntry[]; index: number } | null>(null);
  const load = useCallback(() => {
    get<TrayEntry[] | Page<TrayEntry>>("/api/stories/feed/").then((r) => setTray(Array.isArray(r) ? r : r.results)).catch(() => {});
    get<{ results: Story[] }>("/api/stories/").then((r) => setMine(r.results)).catch(() => {});
  }, []);
  useEffect(load, [load]);
  if (!user) return null;
  // the tray lists the viewer's own entry too; "Your story" is drawn from /api/stories/ instead,
  // which carries the view counts, so it is shown once
  const own: TrayEntry | null = mine.length ? { user, has_unseen: false, latest_at: mine[mine.length - 1].created_at, stories: mine } : null;
  const others = tray.filter((t) => t.user.id !== user.id);
  const entries = own ? [own, ...others] : others;
  if (!entries.length) return null;
  return (
    <nav className="tray" aria-label="Stories">
      {entries.map((t, i) => (
        <button key={t.user.id} className={"tray-item" + (t.has_unseen ? " unseen" : "")} onClick={() => setOpen({ entries, index: i })}>
          <Avatar user={t.user} size={56} />
          <span>{t === own ? "Your story" : t.user.username}</span>{t.has_unseen && <span className="sr-only">(new)</span>}
        </button>
      ))}
      {open && <StoryViewer entries={open.entries} start={open.index} onClose={() => { setOpen(null); load(); }} />}
    </nav>
  );
}

export function StoryViewer({ entries, start, onClose }: { entries: TrayEntry[]; start: number; onClose: () => void }) {
  const user = useStore(me);
  const [who, setWho] = useState(start);
  const [index, setIndex] = useState(() => Math.max(0, entries[start].stories.findIndex((s) => !s.seen)));
  const [elapsed, setElapsed] = useState(0);
  const [paused, setPaused] = useState(false);
  const [reply, setReply] = useState("");
  const [note, setNote] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [viewers, setViewers] = useState<{ user: UserBrief; viewed_at: string }[] | null>(null);
  const entry = entries[who];
  const story = entry.stories[index];
  const isMine = user?.id === entry.user.id;

  const next = useCallback(() => {
    setElapsed(0);
    if (index + 1 < entry.stories.length) setIndex(index + 1);
    else if (who + 1 < entries.length) { setWho(who + 1); setIndex(0); }
    else onClose();
  }, [index, who, entry, entries, onClose]);
  const prev = () => {
    setElapsed(0);
    if (index > 0) setIndex(index - 1);
    else if (who > 0) { setWho(who - 1); setIndex(0); }
  };

  useEffect(() => {
    if (!story || isMine) return;
    post(`/api/stories/${story.id}/view/`).catch(() => {});
  }, [story?.id, isMine]);

  useEffect(() => {
    if (paused || viewers) return;
    const t = setInterval(() => setElapsed((e) => e + 100), 100);
    return () => clearInterval(t);
  }, [paused, viewers]);
  useEffect(() => { if (elapsed >= STORY_MS) next(); }, [elapsed, next]);

  useEffect(() => {
    const key = (e: KeyboardEvent) => {
      if ((e.target as HTMLElement)?.tagName === "INPUT") return;
      if (e.key === "ArrowRight") next();
      if (e.key === "ArrowLeft") prev();
      if (e.key === "Escape") onClose();
    };
    window.addEventListener("keydown", key);
    return () => window.removeEventListener("keydown", key);
  });

  async function react(body: { emoji?: string; text?: string }) {
    setError(null);
    try {
      await post(`/api/stories/${story.id}/react/`, body);
      setNote(body.emoji ? `Sent ${body.emoji}` : "Reply sent");
      setReply("");
    } catch (e) { setError(e); }
  }

  async function showViewers() {
    setPaused(true);
    try {
      const page = await get<{ results: { user: UserBrief; viewed_at: string }[] }>(`/api/stories/${story.id}/viewers/`);
      setViewers(page.results);
    } catch (e) { setError(e); }
  }

  if (!story) return null;
  return (
    <div className="story-viewer" role="dialog" aria-modal="true" aria-label={`${entry.user.username}'s story`}>
      <div className="bars" aria-hidden="true">
        {entry.stories.map((s, i) => (
          <span key={s.id}><i style={{ width: i < index ? "100%" : i === index ? `${Math.min(100, (elapsed / STORY_MS) * 100)}%` : "0%" }} /></span>
        ))}
      </div>
      <header>
        <Avatar user={entry.user} /> <strong>{entry.user.username}</strong> <span className="muted">{timeAgo(story.created_at)}</span>
        {story.close_friends_only && <span className="badge green">Close friends</span>}
        <button className="icon" aria-label={paused ? "Play" : "Pause"} onClick={() => setPaused(!paused)}>{paused ? "▶" : "❚❚"}</button>
        <button className="icon" aria-label="Close story" onClick={onClose}>✕</button>
      </header>
      <div className="story-media">
        {story.media ? <Photo media={story.media} alt={story.caption || `Story by ${entry.user.username}`} sizes="100vw" /> : <p>Unavailable</p>}
        <button className="tap prev" aria-label="Previous story" onClick={prev} />
        <button className="tap next" aria-label="Next story" onClick={next} />
      </div>
      {story.caption && <p className="story-caption">{story.caption}</p>}
      <footer>
        {isMine ? (
          <button onClick={showViewers}>Seen by {story.view_count ?? 0}</button>
        ) : (
          <form className="inline" onSubmit={(e: FormEvent) => { e.preventDefault(); if (reply.trim()) react({ text: reply.trim() }); }}>
            <label className="grow"><span className="sr-only">Reply to {entry.user.username}</span>
              <input value={reply} onChange={(e) => setReply(e.target.value)} onFocus={() => setPaused(true)} placeholder={`Reply to ${entry.user.username}…`} />
            </label>
            {["❤️", "😂", "🔥"].map((emoji) => <button type="button" key={emoji} className="icon" aria-label={`React ${emoji}`} onClick={() => react({ emoji })}>{emoji}</button>)}
          </form>
        )}
        {note && <p role="status" className="small">{note}</p>}
        <ErrorLine error={error} />
      </footer>
      {viewers && (
        <Modal title="Viewers" onClose={() => { setViewers(null); setPaused(false); }}>
          {!viewers.length && <p className="muted">No one yet.</p>}
          <ul className="plain viewers">{viewers.map((v) => <li key={v.user.id}><Avatar user={v.user} /> {v.user.username} <span className="muted small">{timeAgo(v.viewed_at)}</span></li>)}</ul>
        </Modal>
      )}
    </div>
  );
}

export function CloseFriends() {
  const [list, setList] = useState<UserBrief[]>([]);
  const [q, setQ] = useState("");
  const [found, setFound] = useState<UserBrief[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  useEffect(() => {
    get<{ results: UserBrief[] } | UserBrief[]>("/api/accounts/close-friends/?limit=100").then((r) => setList(Array.isArray(r) ? r : r.results), setError);
  }, []);
  useEffect(() => {
    if (!q.trim()) { setFound([]); return; }
    const t = setTimeout(() => get<Page<UserBrief>>(`/api/search/users/?q=${encodeURIComponent(q)}&limit=5`).then((p) => setFound(p.results), () => {}), 200);
    return () => clearTimeout(t);
  }, [q]);
  async function save(next: UserBrief[]) {
    setError(null);
    setSaved(false);
    try {
      await put("/api/accounts/close-friends/", { user_ids: next.map((u) => u.id) });
      setList(next);
      setSaved(true);
    } catch (e) { setError(e); }
  }
  return (
    <section>
      <h2>Close friends</h2>
      <ul className="plain">
        {list.map((u) => <li key={u.id}><Avatar user={u} /> {u.username} <button className="link" onClick={() => save(list.filter((x) => x.id !== u.id))}>Remove {u.username}</button></li>)}
      </ul>
      <label>Add someone<input value={q} onChange={(e) => setQ(e.target.value)} placeholder="Search people" /></label>
      <ul className="plain">
        {found.filter((u) => !list.some((x) => x.id === u.id)).map((u) => <li key={u.id}><button onClick={() => save([...list, u])}>Add {u.username}</button></li>)}
      </ul>
      {saved && <p role="status" className="small">Saved.</p>}
      <ErrorLine error={error} />
    </section>
  );
}
