// /admin/: the report queue with each target rendered, resolve actions, suspensions, roles,
// the audit log and the stats. The API answers 404 to anyone who is not a moderator.
import { FormEvent, useEffect, useState } from "react";
import { get, Media, Page, patch, post } from "../api";
import { Link, navigate } from "../router";
import { me, useStore } from "../state";
import { ErrorLine, mediaById, Photo, timeAgo } from "../ui";

interface Report {
  id: string; status: string; reason: string; text?: string | null; created_at: string;
  reporter?: { id: string; username: string } | null; target: TargetT; note?: string | null;
  target_report_count?: number; report_count?: number; resolution?: { action: string; note?: string } | null; action?: string | null;
}

/** An account as moderators see it (a report's owner; GET /api/admin/users/: suspended and deactivated ones too). */
interface Standing {
  id: string; username: string; role: string; suspended: boolean; suspended_until?: string | null;
  is_active?: boolean; suspension_reason?: string | null;
}
interface TargetT {
  type: string; id: string; exists?: boolean; owner?: Standing | null; text?: string | null; media_ids?: string[];
  post_id?: string | null; conversation_id?: string | null; seq?: number | null;
}

/** The reported thing as a moderator sees it: its text, its photos, its owner's standing. */
function Target({ target }: { target: TargetT }) {
  const [media, setMedia] = useState<Media[]>([]);
  useEffect(() => {
    Promise.all((target.media_ids ?? []).slice(0, 4).map(mediaById)).then((list) => setMedia(list.filter((m): m is Media => !!m)));
  }, [target.type, target.id]);
  const owner = target.owner;
  const link = target.type === "post" ? `/p/${target.id}` : target.type === "comment" && target.post_id ? `/p/${target.post_id}`
    : target.type === "user" ? `/u/${target.id}` : null;
  return (
    <div className="target">
      <p className="small muted">
        {target.type} {target.id}{target.exists === false ? " · removed" : ""}
        {owner && <> · by <strong>{owner.username}</strong>{owner.suspended ? " (suspended)" : ""}</>}
        {target.type === "message" && target.seq ? ` · message ${target.seq} of conversation ${target.conversation_id}` : ""}
      </p>
      {target.text && <p className="target-text">{target.text}</p>}
      {media.length > 0 && <div className="row">{media.map((m) => <Photo key={m.id} media={m} alt={`Reported ${target.type} photo`} sizes="120px" className="thumb" />)}</div>}
      {link && target.exists !== false && <Link to={link} className="small">Open the {target.type}</Link>}
    </div>
  );
}

function ReportCard({ report, onDone }: { report: Report; onDone: () => void }) {
  const [note, setNote] = useState("");
  const [error, setError] = useState<unknown>(null);
  async function resolve(action: "dismiss" | "remove" | "suspend") {
    setError(null);
    try {
      await post(`/api/admin/reports/${report.id}/resolve/`, { action, note: note || undefined });
      onDone();
    } catch (e) { setError(e); }
  }
  const count = report.target_report_count ?? report.report_count;
  return (
    <article className="report card" aria-label={`Report ${report.id}`}>
      <header className="row between">
        <span><strong>{report.reason.replace("_", " ")}</strong> · {report.target.type}{count ? ` · ${count} report${count > 1 ? "s" : ""}` : ""}</span>
        <span className="muted small">{timeAgo(report.created_at)} · {report.status}</span>
      </header>
      {report.reporter && <p className="small">Reported by {report.reporter.username}</p>}
      {report.text && <p className="small">“{report.text}”</p>}
      <Target target={report.target} />
      {report.status === "open" ? (
        <div className="row">
          <label className="grow"><span className="sr-only">Note for report {report.id}</span><input value={note} onChange={(e) => setNote(e.target.value)} placeholder="Note (optional)" /></label>
          <button onClick={() => resolve("dismiss")}>Dismiss</button>
          <button className="danger" onClick={() => resolve("remove")}>Remove</button>
          <button className="danger" onClick={() => resolve("suspend")}>Suspend author</button>
        </div>
      ) : <p className="small muted">Resolved{report.action || report.resolution?.action ? `: ${report.action ?? report.resolution?.action}` : ""}{report.note ? ` — ${report.note}` : ""}</p>}
      {report.target.owner?.suspended && (
        <button onClick={() => post(`/api/admin/users/${report.target.owner!.id}/unsuspend/`).then(onDone, setError)}>Unsuspend {report.target.owner.username}</button>
      )}
      <ErrorLine error={error} />
    </article>
  );
}

function Reports() {
  const [status, setStatus] = useState("open");
  const [type, setType] = useState("");
  const [list, setList] = useState<Report[]>([]);
  const [error, setError] = useState<unknown>(null);
  const load = () => get<Page<Report>>(`/api/admin/reports/?status=${status}${type ? `&type=${type}` : ""}&limit=50`).then((p) => { setList(p.results); setError(null); }, setError);
  useEffect(() => { load(); }, [status, type]);
  return (
    <section>
      <div className="row">
        <label>Status<select value={status} onChange={(e) => setStatus(e.target.value)}><option value="open">open</option><option value="resolved">resolved</option></select></label>
        <label>Type<select value={type} onChange={(e) => setType(e.target.value)}>
          <option value="">all</option>{["post", "comment", "story", "message", "user"].map((t) => <option key={t} value={t}>{t}</option>)}
        </select></label>
      </div>
      <ErrorLine error={error} />
      {list.map((r) => <ReportCard key={r.id} report={r} onDone={load} />)}
      {!list.length && !error && <p className="muted">The queue is empty.</p>}
    </section>
  );
}

function standingLine(a: Standing): string {
  if (a.suspended) return `suspended${a.suspended_until ? ` until ${new Date(a.suspended_until).toLocaleString()}` : ""}${a.suspension_reason ? `: ${a.suspension_reason}` : ""}`;
  return a.is_active === false ? "deactivated" : a.role;
}

function Users({ admin }: { admin: boolean }) {
  const [q, setQ] = useState("");
  const [found, setFound] = useState<Standing[]>([]);
  const [picked, setPicked] = useState<Standing | null>(null);
  const [reason, setReason] = useState("");
  const [until, setUntil] = useState("");
  const [role, setRole] = useState("user");
  const [done, setDone] = useState("");
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    if (!q.trim()) { setFound([]); return; }
    const t = setTimeout(() => get<Page<Standing>>(`/api/admin/users/?q=${encodeURIComponent(q)}&limit=8`).then((p) => setFound(p.results), setError), 200);
    return () => clearTimeout(t);
  }, [q]);
  async function act(f: () => Promise<unknown>, note: string) {
    setError(null); setDone("");
    try {
      const now = await f();
      setDone(note);
      if (now && typeof now === "object" && "suspended" in now) {  // a suspension changed: show the standing it left
        setPicked(now as Standing);
        setFound((list) => list.map((a) => (a.id === (now as Standing).id ? (now as Standing) : a)));
      }
    } catch (e) { setError(e); }
  }
  return (
    <section>
      <label>Find an account<input value={q} onChange={(e) => setQ(e.target.value)} placeholder="username" /></label>
      <ul className="plain">{found.map((u) => <li key={u.id}><button onClick={() => { setPicked(u); setDone(""); }}>{u.username}</button> <span className="muted">{standingLine(u)}</span></li>)}</ul>
      {picked && (
        <div className="card">
          <h3>{picked.username}</h3>
          <p className="muted">{standingLine(picked)}</p>
          <form onSubmit={(e: FormEvent) => { e.preventDefault(); act(() => post(`/api/admin/users/${picked.id}/suspend/`, { reason, until: until ? new Date(until).toISOString() : undefined }), "Suspended."); }}>
            <label>Reason<input value={reason} onChange={(e) => setReason(e.target.value)} required /></label>
            <label>Until (optional)<input type="datetime-local" value={until} onChange={(e) => setUntil(e.target.value)} /></label>
            <button className="danger">Suspend</button>{" "}
            <button type="button" onClick={() => act(() => post(`/api/admin/users/${picked.id}/unsuspend/`), "Unsuspended.")}>Unsuspend</button>
          </form>
          {admin && (
            <form onSubmit={(e: FormEvent) => { e.preventDefault(); act(() => patch(`/api/admin/users/${picked.id}/`, { role }), "Role changed."); }}>
              <label>Role<select value={role} onChange={(e) => setRole(e.target.value)}>{["user", "moderator", "admin"].map((r) => <option key={r}>{r}</option>)}</select></label>
              <button>Set role</button>{" "}
              <button type="button" onClick={() => act(() => patch(`/api/admin/users/${picked.id}/`, { is_verified: true }), "Verified.")}>Mark verified</button>
            </form>
          )}
        </div>
      )}
      {done && <p role="status">{done}</p>}
      <ErrorLine error={error} />
    </section>
  );
}

function Audit() {
  const [list, setList] = useState<any[]>([]);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => { get<Page<any>>("/api/admin/audit/?limit=100").then((p) => setList(p.results), setError); }, []);
  return (
    <section>
      <ErrorLine error={error} />
      <table className="audit">
        <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">Target</th><th scope="col">Why</th></tr></thead>
        <tbody>{list.map((a) => (
          <tr key={a.id}><td>{new Date(a.created_at).toLocaleString()}</td><td>{a.actor_username ?? a.actor_id ?? "system"}</td>
            <td>{a.action.replace(/_/g, " ")}{a.details && a.details.to !== undefined ? `: ${a.details.from ?? ""} → ${a.details.to}` : ""}</td>
            <td>{a.target_type} {a.target_id}</td><td>{a.note || a.reason || ""}</td></tr>
        ))}</tbody>
      </table>
    </section>
  );
}

function Stats() {
  const [stats, setStats] = useState<Record<string, number> | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => { get<Record<string, number>>("/api/admin/stats/").then(setStats, setError); }, []);
  return (
    <section>
      <ErrorLine error={error} />
      <dl className="stats">{stats && Object.entries(stats).map(([k, v]) => <div key={k}><dt>{k.replace(/_/g, " ")}</dt><dd>{typeof v === "object" ? JSON.stringify(v) : v}</dd></div>)}</dl>
    </section>
  );
}

export default function Admin({ path }: { path: string }) {
  const user = useStore(me);
  const tab = path.split("/")[2] || "reports";
  useEffect(() => { if (user && user.role && user.role === "user") navigate("/", true); }, [user]);
  const admin = user?.role === "admin";
  const tabs = [["reports", "Reports"], ["users", "Accounts"], ...(admin ? [["audit", "Audit log"]] : []), ["stats", "Stats"]];
  return (
    <main className="page admin">
      <h1>Moderation</h1>
      <nav className="tabs" aria-label="Moderation">
        {tabs.map(([k, label]) => <Link key={k} to={`/admin/${k}`} aria-current={tab === k ? "page" : undefined}>{label}</Link>)}
      </nav>
      {tab === "reports" && <Reports />}
      {tab === "users" && <Users admin={admin} />}
      {tab === "audit" && <Audit />}
      {tab === "stats" && <Stats />}
    </main>
  );
}
