// The home feed, a post (photos, like with a double tap, save, share), its page and comments.
import { FormEvent, useEffect, useRef, useState } from "react";
import { Comment, Conversation, get, newClientId, Page, post as postJson, Post, api } from "../api";
import { Icon } from "../icons";
import { Link } from "../router";
import { realtime } from "../socket";
import { ErrorLine, Modal, Paged, Photo, timeAgo, UserLink } from "../ui";
import { me, useStore } from "../state";
import { ReportDialog, UserList } from "./Profile";
import { StoriesTray } from "./Stories";

/** A caption with #hashtags and @mentions as links. */
export function Caption({ text }: { text: string }) {
  const parts = text.split(/([#@][\p{L}\p{N}_.]+)/u);
  return (
    <>
      {parts.map((p, i) => {
        if (p.startsWith("#") && p.length > 1) return <Link key={i} to={`/search?q=${encodeURIComponent(p)}`}>{p}</Link>;
        if (p.startsWith("@") && p.length > 1) return <Link key={i} to={`/search?q=${encodeURIComponent(p.slice(1).replace(/\.$/, ""))}`}>{p}</Link>;
        return <span key={i}>{p}</span>;
      })}
    </>
  );
}

export function ShareDialog({ share, onClose }: { share: { type: "post" | "story" | "user"; id: string }; onClose: () => void }) {
  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [sent, setSent] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => { get<Page<Conversation>>("/api/conversations/").then((p) => setConversations(p.results), setError); }, []);
  function send(c: Conversation) {
    realtime.sendMessage({ conversation_id: c.id, client_id: newClientId(), text: "", share });
    setSent(c.id);
  }
  return (
    <Modal title="Share" onClose={onClose}>
      <ErrorLine error={error} />
      {!conversations.length && !error && <p className="muted">Start a conversation in Messages first.</p>}
      <ul className="plain">
        {conversations.map((c) => (
          <li key={c.id}>
            <button onClick={() => send(c)} disabled={sent === c.id}>{c.title || `Conversation ${c.id}`}{sent === c.id ? " — sent" : ""}</button>
          </li>
        ))}
      </ul>
    </Modal>
  );
}

export function PostCard({ post: initial, full = false }: { post: Post; full?: boolean }) {
  const [post, setPost] = useState(initial);
  const [index, setIndex] = useState(0);
  const [error, setError] = useState<unknown>(null);
  const [heart, setHeart] = useState(false);
  const [sharing, setSharing] = useState(false);
  const [reporting, setReporting] = useState(false);
  const [likers, setLikers] = useState(false);
  const [gone, setGone] = useState(false);
  const viewer = useStore(me);
  const lastTap = useRef(0);

  async function like(on: boolean) {
    const before = post;
    setPost({ ...post, liked: on, like_count: post.like_count + (on === post.liked ? 0 : on ? 1 : -1) });
    try {
      const r = await postJson<{ liked: boolean; like_count: number }>(`/api/posts/${post.id}/${on ? "like" : "unlike"}/`);
      setPost((p) => ({ ...p, ...r }));
    } catch (e) {
      setPost(before);
      setError(e);
    }
  }

  async function save(on: boolean) {
    try {
      await postJson(`/api/posts/${post.id}/${on ? "save" : "unsave"}/`);
      setPost((p) => ({ ...p, saved: on }));
    } catch (e) { setError(e); }
  }

  function tap() {
    const now = Date.now();
    if (now - lastTap.current < 300) {
      setHeart(true);
      setTimeout(() => setHeart(false), 700);
      if (!post.liked) like(true);
    }
    lastTap.current = now;
  }

  const media = post.media[index];
  if (gone) return <p className="muted center" role="status">Post deleted.</p>;
  return (
    <article className="post" aria-label={`Post by ${post.author.username}`}>
      <header>
        <UserLink user={post.author} />
        {post.location && <Link className="muted small" to={`/search?q=${encodeURIComponent(post.location.name)}`}>{post.location.name}</Link>}
        <Link className="muted small when" to={`/p/${post.id}`}>{timeAgo(post.created_at)}</Link>
        {viewer?.id === post.author.id
          ? <button className="link small" onClick={async () => { if (!confirm("Delete this post?")) return; try { await api("DELETE", `/api/posts/${post.id}/`); setGone(true); } catch (e) { setError(e); } }}>Delete</button>
          : <button className="link small" onClick={() => setReporting(true)}>Report</button>}
      </header>
      {media && (
        <div className="media" onClick={tap} onDoubleClick={(e) => e.preventDefault()}>
          <Photo media={media} alt={`Photo ${index + 1} of ${post.media.length} by ${post.author.username}`} />
          {heart && <span className="big-heart"><Icon name="heart" filled size={96} /></span>}
          {post.media.length > 1 && (
            <>
              {index > 0 && <button className="nav prev" aria-label="Previous photo" onClick={(e) => { e.stopPropagation(); setIndex(index - 1); }}>‹</button>}
              {index < post.media.length - 1 && <button className="nav next" aria-label="Next photo" onClick={(e) => { e.stopPropagation(); setIndex(index + 1); }}>›</button>}
              <div className="dots" aria-hidden="true">{post.media.map((m, i) => <span key={m.id} className={i === index ? "on" : ""} />)}</div>
            </>
          )}
        </div>
      )}
      <div className="actions">
        <button className={"icon" + (post.liked ? " liked" : "")} aria-pressed={post.liked} aria-label={post.liked ? "Unlike" : "Like"} onClick={() => like(!post.liked)}><Icon name="heart" filled={post.liked} /></button>
        <Link className="icon" to={`/p/${post.id}`} aria-label="Comments"><Icon name="comment" /></Link>
        <button className="icon" aria-label="Share" onClick={() => setSharing(true)}><Icon name="share" /></button>
        <button className="icon right" aria-pressed={post.saved} aria-label={post.saved ? "Unsave" : "Save"} onClick={() => save(!post.saved)}><Icon name="bookmark" filled={post.saved} /></button>
      </div>
      <p className="likes">
        {post.like_count > 0
          ? <button className="link" aria-haspopup="dialog" onClick={() => setLikers(true)}><strong>{post.like_count}</strong> {post.like_count === 1 ? "like" : "likes"}</button>
          : <><strong>0</strong> likes</>}
      </p>
      {post.caption && <p className="caption"><strong>{post.author.username}</strong> <Caption text={post.caption} /></p>}
      {!full && post.comment_count > 0 && <p><Link className="muted" to={`/p/${post.id}`}>View {post.comment_count === 1 ? "1 comment" : `all ${post.comment_count} comments`}</Link></p>}
      <ErrorLine error={error} />
      {full && <Comments postId={post.id} postAuthorId={post.author.id}
        onAdded={() => setPost((p) => ({ ...p, comment_count: p.comment_count + 1 }))}
        onRemoved={() => setPost((p) => ({ ...p, comment_count: Math.max(0, p.comment_count - 1) }))} />}
      {likers && <UserList title="Likes" first={`/api/posts/${post.id}/likes/`} onClose={() => setLikers(false)} />}
      {sharing && <ShareDialog share={{ type: "post", id: post.id }} onClose={() => setSharing(false)} />}
      {reporting && <ReportDialog target={{ type: "post", id: post.id }} onClose={() => setReporting(false)} />}
    </article>
  );
}

/** A comment with its tools: like, reply, replies; delete for its author and for the post's
 * author (the API lets both), report for anyone else. */
function CommentItem({ comment, postAuthorId, onReply, onRemoved }: {
  comment: Comment; postAuthorId: string; onReply: (c: Comment) => void; onRemoved: () => void;
}) {
  const [c, setC] = useState(comment);
  const [replies, setReplies] = useState<Comment[] | null>(null);
  const [reporting, setReporting] = useState(false);
  const [gone, setGone] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const viewer = useStore(me);
  const own = viewer?.id === c.author.id;
  const mayDelete = own || viewer?.id === postAuthorId;
  async function like() {
    const r = await postJson<Partial<Comment>>(`/api/comments/${c.id}/${c.liked ? "unlike" : "like"}/`).catch(() => null);
    setC((old) => ({ ...old, liked: !old.liked, like_count: old.like_count + (old.liked ? -1 : 1), ...(r ?? {}) }));
  }
  async function remove() {
    if (!own && !confirm(`Delete ${c.author.username}'s comment?`)) return;
    setError(null);
    try {
      await api("DELETE", `/api/comments/${c.id}/`);
      setGone(true);
      onRemoved();
    } catch (e) { setError(e); }
  }
  if (gone) return <li className="comment"><span className="small muted" role="status">Comment deleted.</span></li>;
  async function showReplies() {
    const page = await get<Page<Comment>>(`/api/comments/?parent_id=${c.id}&limit=100`);
    setReplies(page.results);
  }
  return (
    <li className="comment">
      <UserLink user={c.author} /> <span>{c.text}</span>
      <div className="small muted">
        {timeAgo(c.created_at)} · <button className="link" onClick={like} aria-pressed={c.liked}>{c.liked ? "Unlike" : "Like"}</button> {c.like_count > 0 && `(${c.like_count})`}
        {" · "}<button className="link" onClick={() => onReply(c)}>Reply</button>
        {c.reply_count > 0 && !replies && <> · <button className="link" onClick={showReplies}>View {c.reply_count} {c.reply_count === 1 ? "reply" : "replies"}</button></>}
        {mayDelete && <>{" · "}<button className="link" onClick={remove} aria-label={own ? "Delete" : `Delete ${c.author.username}'s comment`}>Delete</button></>}
        {!own && <>{" · "}<button className="link" onClick={() => setReporting(true)}>Report</button></>}
      </div>
      <ErrorLine error={error} />
      {reporting && <ReportDialog target={{ type: "comment", id: c.id }} onClose={() => setReporting(false)} />}
      {replies && <ul className="replies">{replies.map((r) => <CommentItem key={r.id} comment={r} postAuthorId={postAuthorId} onReply={() => onReply(c)} onRemoved={onRemoved} />)}</ul>}
    </li>
  );
}

export function Comments({ postId, postAuthorId, onAdded, onRemoved }: {
  postId: string; postAuthorId: string; onAdded: () => void; onRemoved: () => void;
}) {
  const [comments, setComments] = useState<Comment[]>([]);
  const [text, setText] = useState("");
  const [replyTo, setReplyTo] = useState<Comment | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [version, setVersion] = useState(0);
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => {
    get<Page<Comment>>(`/api/comments/?post_id=${postId}&limit=50`).then((p) => setComments(p.results), setError);
  }, [postId, version]);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      await postJson<Comment>("/api/comments/", { post_id: postId, text, parent_id: replyTo?.id });
      setText("");
      setReplyTo(null);
      onAdded();
      setVersion((v) => v + 1);
    } catch (err) { setError(err); }
  }

  return (
    <section className="comments" aria-label="Comments">
      <ul className="plain">
        {comments.map((c) => <CommentItem key={c.id + ":" + version} comment={c} postAuthorId={postAuthorId} onRemoved={onRemoved}
          onReply={(to) => { setReplyTo(to); input.current?.focus(); }} />)}
      </ul>
      <form onSubmit={submit} className="inline">
        {replyTo && <span className="small muted">Replying to {replyTo.author.username} <button type="button" className="link" onClick={() => setReplyTo(null)}>cancel</button></span>}
        <label className="grow"><span className="sr-only">Add a comment</span>
          <input ref={input} value={text} onChange={(e) => setText(e.target.value)} placeholder="Add a comment…" maxLength={2200} required />
        </label>
        <button className="primary">Post</button>
      </form>
      <ErrorLine error={error} />
    </section>
  );
}

export function Feed() {
  return (
    <main className="feed">
      <h1 className="sr-only">Home</h1>
      <StoriesTray />
      <Paged<Post> first="/api/posts/feed/?limit=10" keyOf={(p) => p.id} render={(p) => <PostCard post={p} />}
        empty={<p className="muted center">Your feed is empty. Follow people from <Link to="/explore">Explore</Link> or <Link to="/search">Search</Link>.</p>} />
    </main>
  );
}

export function PostPage({ id }: { id: string }) {
  const [post, setPost] = useState<Post | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => { setPost(null); api<Post>("GET", `/api/posts/${id}/`).then(setPost, setError); }, [id]);
  return (
    <main className="feed">
      <h1 className="sr-only">Post</h1>
      <ErrorLine error={error} />
      {post && <PostCard post={post} full />}
    </main>
  );
}
