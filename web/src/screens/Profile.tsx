// A profile: counts, the grid, follow / requested / unfollow, block, mute, report, message;
// follow requests for a private account.
import { FormEvent, useEffect, useState } from "react";
import { ApiError, get, Page, post, Post, Profile as ProfileT, UserBrief } from "../api";
import { Link, navigate } from "../router";
import { me, notice, useStore } from "../state";
import { Avatar, ErrorLine, Modal, Paged, Photo, UserLink } from "../ui";

const REASONS = ["spam", "harassment", "hate", "nudity", "violence", "self_harm", "ip", "other"] as const;

export function ReportDialog({ target, onClose }: { target: { type: string; id: string }; onClose: () => void }) {
  const [reason, setReason] = useState<string>("spam");
  const [text, setText] = useState("");
  const [done, setDone] = useState(false);
  const [error, setError] = useState<unknown>(null);
  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      await post("/api/reports/", { target, reason, text: text || undefined });
      setDone(true);
    } catch (err) { setError(err); }
  }
  return (
    <Modal title={`Report this ${target.type}`} onClose={onClose}>
      {done ? <p role="status">Thanks — moderators will look at it.</p> : (
        <form onSubmit={submit}>
          <label>Reason
            <select value={reason} onChange={(e) => setReason(e.target.value)}>
              {REASONS.map((r) => <option key={r} value={r}>{r.replace("_", " ")}</option>)}
            </select>
          </label>
          <label>Details (optional)<textarea value={text} onChange={(e) => setText(e.target.value)} maxLength={1000} /></label>
          <ErrorLine error={error} />
          <button className="primary">Send report</button>
        </form>
      )}
    </Modal>
  );
}

export function UserList({ title, first, onClose }: { title: string; first: string; onClose: () => void }) {
  return (
    <Modal title={title} onClose={onClose}>
      <Paged<UserBrief> first={first} keyOf={(u) => u.id} render={(u) => <div onClick={onClose}><UserLink user={u} /></div>} />
    </Modal>
  );
}

export function Grid({ first }: { first: string }) {
  return (
    <div className="grid">
      <Paged<Post> first={first} keyOf={(p) => p.id} empty={<p className="muted">No posts yet.</p>}
        render={(p) => (
          <Link to={`/p/${p.id}`} aria-label={`Post: ${p.caption.slice(0, 60) || "photo"}`}>
            {p.media[0] && <Photo media={p.media[0]} alt="" sizes="200px" className="square" />}
            {p.media.length > 1 && <span className="multi" aria-hidden="true">❐</span>}
          </Link>
        )} />
    </div>
  );
}

export function ProfilePage({ id }: { id: string }) {
  const viewer = useStore(me);
  const [profile, setProfile] = useState<ProfileT | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [list, setList] = useState<"followers" | "following" | null>(null);
  const [reporting, setReporting] = useState(false);
  const [menu, setMenu] = useState(false);
  const [tab, setTab] = useState<"posts" | "saved">("posts");

  // the server hides a blocked account from its blocker too (404): the blocker's own list says
  // whether that is why, so the page can offer the unblock
  const [blocked, setBlocked] = useState<UserBrief | null>(null);
  const load = () => get<ProfileT>(`/api/accounts/users/${id}/`).then(setProfile, async (e) => {
    if (e instanceof ApiError && e.status === 404) {
      const page = await get<Page<UserBrief>>("/api/accounts/blocks/?limit=100").catch(() => null);
      const found = page?.results.find((u) => u.id === id);
      if (found) { setBlocked(found); return; }
    }
    setError(e);
  });
  useEffect(() => { setProfile(null); setBlocked(null); setError(null); setTab("posts"); load(); }, [id]);

  async function act(path: string, body?: unknown) {
    setError(null);
    try {
      await post(`/api/accounts/users/${id}/${path}/`, body);
      await load();
    } catch (e) { setError(e); }
  }

  async function block(username: string) {
    setError(null);
    try {
      await post(`/api/accounts/users/${id}/block/`);
    } catch (e) { setError(e); return; }
    // the profile is hidden from its blocker now: home, with a word on how to undo it
    navigate("/");
    notice.set({ text: `You blocked ${username}. You can unblock them in Settings.`, at: "/",
                 link: { to: "/settings#blocked", label: "Blocked accounts" } });
  }

  async function unblock() {
    setError(null);
    try {
      await post(`/api/accounts/users/${id}/unblock/`);
      setBlocked(null);
      await load();
    } catch (e) { setError(e); }
  }

  async function message() {
    try {
      const c = await post<{ id: string }>("/api/conversations/", { member_ids: [id] });
      navigate(`/direct/${c.id}`);
    } catch (e) { setError(e); }
  }

  if (blocked) {
    return (
      <main className="page">
        <h1>{blocked.username}</h1>
        <p>You blocked {blocked.username}. You can't see each other's profiles, posts or stories.</p>
        <div className="row"><button onClick={unblock}>Unblock {blocked.username}</button> <Link className="button" to="/settings#blocked">Blocked accounts</Link></div>
        <ErrorLine error={error} />
      </main>
    );
  }
  if (!profile) return <main className="page"><ErrorLine error={error} />{!error && <p className="muted" role="status">Loading…</p>}</main>;
  const rel = profile.relationship;
  const mine = viewer?.id === profile.id;
  const canSee = mine || !profile.is_private || rel?.following;
  return (
    <main className="page profile">
      <header className="profile-head">
        <Avatar user={profile} size={88} />
        <div>
          <h1>{profile.username} {profile.is_verified && <span className="verified" aria-label="verified">✓</span>}</h1>
          <ul className="counts">
            <li><strong>{profile.posts_count}</strong> posts</li>
            <li><button className="link" onClick={() => setList("followers")}><strong>{profile.followers_count}</strong> followers</button></li>
            <li><button className="link" onClick={() => setList("following")}><strong>{profile.following_count}</strong> following</button></li>
          </ul>
          <p><strong>{profile.full_name}</strong></p>
          {profile.bio && <p>{profile.bio}</p>}
          {profile.website && <p><a href={profile.website} rel="noopener noreferrer nofollow" target="_blank">{profile.website}</a></p>}
          <div className="row">
            {mine ? (
              <>
                <Link className="button" to="/settings">Edit profile</Link>
                {profile.is_private && <Link className="button" to="/requests">Follow requests</Link>}
              </>
            ) : rel?.blocking ? (
              <button onClick={() => act("unblock")}>Unblock</button>
            ) : (
              <>
                {rel?.following ? <button onClick={() => act("unfollow")}>Following ✓ · Unfollow</button>
                  : rel?.requested ? <button onClick={() => act("unfollow")}>Requested · Withdraw</button>
                  : <button className="primary" onClick={() => act("follow")}>{rel?.followed_by ? "Follow back" : "Follow"}</button>}
                <button onClick={message}>Message</button>
                <button aria-haspopup="true" aria-expanded={menu} aria-label="More actions" onClick={() => setMenu(!menu)}>⋯</button>
              </>
            )}
          </div>
          {menu && !mine && (
            <div className="menu" role="menu">
              <button role="menuitem" onClick={() => { setMenu(false); act(rel?.muting ? "unmute" : "mute", rel?.muting ? undefined : { stories: true }); }}>{rel?.muting ? "Unmute" : "Mute"}</button>
              <button role="menuitem" onClick={() => { setMenu(false); if (confirm(`Block ${profile.username}?`)) block(profile.username); }}>Block</button>
              <button role="menuitem" onClick={() => { setMenu(false); setReporting(true); }}>Report</button>
            </div>
          )}
        </div>
      </header>
      <ErrorLine error={error} />
      {mine && (
        <div className="tabs" role="tablist">
          <button role="tab" aria-selected={tab === "posts"} onClick={() => setTab("posts")}>Posts</button>
          <button role="tab" aria-selected={tab === "saved"} onClick={() => setTab("saved")}>Saved</button>
        </div>
      )}
      {canSee ? <Grid key={tab} first={tab === "saved" ? "/api/posts/saved/?limit=18" : `/api/posts/?author=${profile.id}&limit=18`} />
        : <p className="muted center">This account is private. Follow it to see its posts.</p>}
      {list && <UserList title={list === "followers" ? "Followers" : "Following"} first={`/api/accounts/users/${profile.id}/${list}/`} onClose={() => setList(null)} />}
      {reporting && <ReportDialog target={{ type: "user", id: profile.id }} onClose={() => setReporting(false)} />}
    </main>
  );
}

export function FollowRequests() {
  const [version, setVersion] = useState(0);
  const [error, setError] = useState<unknown>(null);
  async function answer(id: string, verb: "approve" | "reject") {
    try { await post(`/api/accounts/follow-requests/${id}/${verb}/`); setVersion((v) => v + 1); } catch (e) { setError(e); }
  }
  return (
    <main className="page">
      <h1>Follow requests</h1>
      <ErrorLine error={error} />
      <Paged<{ id?: string; user?: UserBrief } & Partial<UserBrief>> key={version} first="/api/accounts/follow-requests/"
        keyOf={(r) => String(r.id ?? r.user?.id)}
        render={(r) => {
          const user = (r.user ?? r) as UserBrief;
          return (
            <div className="row between">
              <UserLink user={user} />
              <span>
                <button className="primary" onClick={() => answer(user.id, "approve")}>Approve {user.username}</button>{" "}
                <button onClick={() => answer(user.id, "reject")}>Reject {user.username}</button>
              </span>
            </div>
          );
        }} empty={<p className="muted">No requests.</p>} />
    </main>
  );
}
