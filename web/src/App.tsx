// The shell: navigation with the unread badge, the connection banner, and the routes.
import { lazy, Suspense, useEffect, useState } from "react";
import { tokens } from "./api";
import { Link, loginPath, match, navigate, nextPath, useLocation } from "./router";
import { realtime } from "./socket";
import {
  clearUnreadMessages, countNewMessage, loadMe, me, notice, refreshUnread, refreshUnreadMessages, unread,
  unreadMessages, useConnection, useStore,
} from "./state";
import { Icon } from "./icons";
import { Avatar } from "./ui";
import { Login, Register, Reset, Verify } from "./screens/Auth";
import { Composer } from "./screens/Composer";
import { ConversationPage, Inbox } from "./screens/Messages";
import { Explore, Notifications, Search } from "./screens/Other";
import { Feed, PostPage } from "./screens/Posts";
import { FollowRequests, ProfilePage } from "./screens/Profile";
import { Settings } from "./screens/Settings";

const Admin = lazy(() => import("./screens/Admin"));

const PUBLIC = ["/login", "/register", "/verify", "/reset"];

function Banner() {
  const status = useConnection();
  const [shown, setShown] = useState(false);
  // say so only when the connection stays down for a moment, not during a normal reconnect
  useEffect(() => {
    if (status === "open") { setShown(false); return; }
    const t = setTimeout(() => setShown(true), 1200);
    return () => clearTimeout(t);
  }, [status]);
  if (!shown || status === "open") return null;
  return <div className="banner" role="status">Connection lost — reconnecting…</div>;
}

function Notice() {
  const note = useStore(notice);
  const { path } = useLocation();
  // it belongs to the page it was left on: moving on drops it
  useEffect(() => { if (note && note.at !== path) notice.set(null); }, [path, note]);
  if (!note || note.at !== path) return null;
  return (
    <div className="notice" role="status">
      <p>{note.text}{note.link && <> <Link to={note.link.to}>{note.link.label}</Link></>}</p>
      <button className="icon" aria-label="Dismiss" onClick={() => notice.set(null)}>✕</button>
    </div>
  );
}

function Badge({ count, testId }: { count: number; testId: string }) {
  if (count <= 0) return null;
  return <span className="badge" data-testid={testId}><span className="sr-only">, </span>{count}<span className="sr-only"> unread</span></span>;
}

function Nav() {
  const user = useStore(me);
  const count = useStore(unread);
  const conversations = Object.keys(useStore(unreadMessages)).length;
  const { path } = useLocation();
  const item = (to: string, icon: string, label: string, extra?: React.ReactNode) => (
    <Link to={to} aria-current={path === to ? "page" : undefined} className="nav-item">
      <Icon name={icon} filled={path === to && icon !== "search"} /><span className="label">{label}</span>{extra}
    </Link>
  );
  return (
    <nav className="main-nav" aria-label="Main">
      <Link to="/" className="brand">glint<span className="sr-only"> home</span></Link>
      {item("/", "home", "Home")}
      {item("/search", "search", "Search")}
      {item("/explore", "explore", "Explore")}
      {item("/new", "plus", "New post")}
      {item("/direct", "messages", "Messages", <Badge count={conversations} testId="messages-badge" />)}
      {item("/notifications", "heart", "Notifications", <Badge count={count} testId="unread-badge" />)}
      {user && (
        <Link to={`/u/${user.id}`} className="nav-item" aria-current={path === `/u/${user.id}` ? "page" : undefined}>
          <Avatar user={user} size={24} /><span className="label">Profile</span>
        </Link>
      )}
      {item("/settings", "settings", "Settings")}
      {(user?.role === "moderator" || user?.role === "admin") && item("/admin/", "shield", "Moderation")}
    </nav>
  );
}

function Routes({ path, query }: { path: string; query: URLSearchParams }) {
  let p: Record<string, string> | null;
  if (path === "/") return <Feed />;
  if ((p = match("/p/:id", path))) return <PostPage id={p.id} />;
  if ((p = match("/u/:id", path))) return <ProfilePage id={p.id} />;
  if (path === "/new") return <Composer />;
  if (path === "/explore") return <Explore />;
  if (path === "/search") return <Search initial={query.get("q") ?? ""} />;
  if (path === "/notifications") return <Notifications />;
  if (path === "/requests") return <FollowRequests />;
  if (path === "/direct") return <Inbox folder="inbox" />;
  if (path === "/direct/requests") return <Inbox folder="requests" />;
  if ((p = match("/direct/:id", path))) return <ConversationPage key={p.id} id={p.id} request={query.get("request") === "1"} />;
  if (path === "/settings") return <Settings />;
  if (path === "/admin" || path.startsWith("/admin/")) return <Suspense fallback={<p role="status">Loading…</p>}><Admin path={path} /></Suspense>;
  return <main className="page"><h1>Not found</h1><p>There's nothing at this address. <Link to="/">Go home</Link></p></main>;
}

export function App() {
  const { path, query } = useLocation();
  const user = useStore(me);
  const [ready, setReady] = useState(!tokens.access);
  useEffect(() => {
    loadMe().finally(() => setReady(true));
    return tokens.subscribe(() => { if (!tokens.access) me.set(null); });
  }, []);
  useEffect(() => {
    if (!user) return;
    realtime.start();
    refreshUnread();
    refreshUnreadMessages();
    const offs = [
      realtime.on("notification.new", () => { if (location.pathname !== "/notifications") unread.set(unread.get() + 1); }),
      realtime.on("message.new", (f) => countNewMessage(f.message)),
      realtime.on("message.read", (f) => { if (f.user_id === me.get()?.id) clearUnreadMessages(f.conversation_id); }),
      realtime.on("hello", () => { refreshUnread(); refreshUnreadMessages(); }),
    ];
    return () => offs.forEach((off) => off());
  }, [user?.id]);

  if (!ready) return <p className="muted center" role="status">Loading…</p>;
  if (path === "/verify") return <Verify token={query.get("token")} />;
  if (path === "/reset") return <Reset token={query.get("token")} />;
  if (!user) {
    if (path === "/register") return <Register />;
    // back to this page once logged in (/admin/, a post, a conversation)
    if (!PUBLIC.includes(path)) { const to = loginPath(path + location.search + location.hash); setTimeout(() => navigate(to, true)); }
    return <Login />;
  }
  if (PUBLIC.includes(path)) { const to = nextPath(query); setTimeout(() => navigate(to, true)); return null; }
  return (
    <div className="shell">
      <a href="#content" className="skip">Skip to content</a>
      <Nav />
      <Banner />
      <div id="content"><Notice /><Routes path={path} query={query} /></div>
    </div>
  );
}
