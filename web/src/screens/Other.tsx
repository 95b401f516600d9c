// Notifications, explore and search.
import { useEffect, useState } from "react";
import { get, Notification, Page, post, Post, smallestUrl, UserBrief } from "../api";
import { Link, navigate } from "../router";
import { unread } from "../state";
import { Avatar, ErrorLine, timeAgo, UserLink } from "../ui";
import { Grid } from "./Profile";

const VERBS: Record<string, string> = {
  like: "liked your post", comment: "commented on your post", reply: "replied to your comment",
  mention: "mentioned you", follow: "started following you", follow_request: "asked to follow you",
  follow_request_approved: "accepted your follow request", message: "sent you a message",
  message_reaction: "reacted to your message", story_reaction: "reacted to your story",
  report_resolved: "reviewed your report",
};

function targetLink(n: Notification): string {
  if (n.target.post_id) return `/p/${n.target.post_id}`;
  if (n.target.type === "post") return `/p/${n.target.id}`;
  if (n.target.type === "conversation") return `/direct/${n.target.id}`;
  if (n.kind === "follow_request") return "/requests";
  return n.actors[0] ? `/u/${n.actors[0].id}` : "/";
}

export function Notifications() {
  const [items, setItems] = useState<Notification[]>([]);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    get<Page<Notification>>("/api/notifications/?limit=50").then((p) => {
      setItems(p.results);
      return post<{ unread_count: number }>("/api/notifications/read/", {}).then((r) => unread.set(r?.unread_count ?? 0));
    }).catch(setError);
  }, []);
  return (
    <main className="page">
      <h1>Notifications</h1>
      <ErrorLine error={error} />
      <ul className="plain notifications">
        {items.map((n) => {
          const first = n.actors[0];
          const more = n.actor_count - 1;
          return (
            <li key={n.id} className={n.read ? "" : "unread"}>
              <Link to={targetLink(n)} className="row">
                {first && <Avatar user={first} />}
                <span><strong>{first?.username ?? "Someone"}</strong>{more > 0 && ` and ${more} other${more > 1 ? "s" : ""}`} {VERBS[n.kind] ?? n.kind.replace(/_/g, " ")}
                  <span className="muted small"> {timeAgo(n.updated_at ?? n.created_at)}</span></span>
              </Link>
            </li>
          );
        })}
      </ul>
      {!items.length && !error && <p className="muted">No notifications yet.</p>}
    </main>
  );
}

export function Explore() {
  return (
    <main className="page">
      <h1>Explore</h1>
      <Grid first="/api/posts/explore/?limit=24" />
    </main>
  );
}

interface Found { users: UserBrief[]; hashtags: { id: string; name: string; post_count: number }[]; locations: { id: string; name: string; post_count: number }[] }

export function Search({ initial }: { initial: string }) {
  const [q, setQ] = useState(initial);
  const [found, setFound] = useState<Found>({ users: [], hashtags: [], locations: [] });
  const [posts, setPosts] = useState<Post[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => { setQ(initial); }, [initial]);
  useEffect(() => {
    const term = q.trim().replace(/^[#@]/, "");
    if (!term) { setFound({ users: [], hashtags: [], locations: [] }); setPosts(null); return; }
    const t = setTimeout(async () => {
      try {
        const enc = encodeURIComponent(term);
        const [users, hashtags, locations, ps] = await Promise.all([
          get<Page<any>>(`/api/search/users/?q=${enc}&limit=8`),
          get<Page<any>>(`/api/search/hashtags/?q=${enc}&limit=5`),
          get<Page<any>>(`/api/search/locations/?q=${enc}&limit=5`),
          get<Page<Post>>(`/api/search/posts/?q=${encodeURIComponent(q.trim())}&limit=12`),
        ]);
        setFound({ users: users.results, hashtags: hashtags.results, locations: locations.results });
        setPosts(ps.results);
        setError(null);
      } catch (e) { setError(e); }
    }, 180);
    return () => clearTimeout(t);
  }, [q]);
  return (
    <main className="page search">
      <h1>Search</h1>
      <div>
        <label><span className="sr-only">Search</span>
          <input type="search" value={q} autoFocus placeholder="Search people, #hashtags, places" aria-controls="search-results"
            onChange={(e) => { setQ(e.target.value); navigate(`/search?q=${encodeURIComponent(e.target.value)}`, true); }} />
        </label>
      </div>
      <ErrorLine error={error} />
      <ul id="search-results" className="plain typeahead" aria-label="Suggestions" aria-live="polite">
        {found.users.map((u) => <li key={"u" + u.id} ><UserLink user={u} /> <span className="muted small">{u.full_name}</span></li>)}
        {found.hashtags.map((h) => <li key={"h" + h.id} ><Link to={`/search?q=%23${encodeURIComponent(h.name)}`}>#{h.name}</Link> <span className="muted small">{h.post_count} posts</span></li>)}
        {found.locations.map((l) => <li key={"l" + l.id} ><Link to={`/search?q=${encodeURIComponent(l.name)}`}>📍 {l.name}</Link> <span className="muted small">{l.post_count} posts</span></li>)}
      </ul>
      {posts && posts.length > 0 && (
        <>
          <h2>Posts</h2>
          <div className="grid">{posts.map((p) => <Link key={p.id} to={`/p/${p.id}`}>{p.media[0] && <img src={smallestUrl(p.media[0]) ?? undefined} alt={p.caption.slice(0, 60) || "photo"} />}</Link>)}</div>
        </>
      )}
    </main>
  );
}
