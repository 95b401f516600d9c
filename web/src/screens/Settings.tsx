// Settings: profile, privacy, presence, notification preferences, blocked accounts, password,
// sessions, 2FA, close friends, export, delete account, log out.
import { FormEvent, useEffect, useState } from "react";
import { api, ApiError, del, get, Page, patch, post, Profile, tokens, upload, UserBrief } from "../api";
import { navigate } from "../router";
import { loadMe, me, useStore } from "../state";
import { realtime } from "../socket";
import { Avatar, ErrorLine, usePaged, UserLink } from "../ui";
import { CloseFriends } from "./Stories";

function useSaved() {
  const [saved, setSaved] = useState("");
  const [error, setError] = useState<unknown>(null);
  async function run(f: () => Promise<unknown>, note = "Saved.") {
    setError(null);
    setSaved("");
    try { await f(); setSaved(note); } catch (e) { setError(e); }
  }
  const status = <>{saved && <p role="status" className="small">{saved}</p>}<ErrorLine error={error} /></>;
  return { run, status };
}

function ProfileForm({ profile }: { profile: Profile }) {
  const [form, setForm] = useState({ full_name: profile.full_name, bio: profile.bio, website: profile.website });
  const { run, status } = useSaved();
  const [progress, setProgress] = useState<number | null>(null);
  return (
    <section>
      <h2>Profile</h2>
      <div className="row"><Avatar user={profile} size={64} />
        <label className="file">Change photo<input type="file" accept="image/*" onChange={(e) => {
          const f = e.target.files?.[0];
          if (f) run(async () => { const m = await upload(f, setProgress); await patch("/api/accounts/users/me/", { avatar_media_id: m.id }); await loadMe(); setProgress(null); }, "Photo changed.");
        }} /></label>
        {progress !== null && <progress max={1} value={progress} aria-label="Photo upload" />}
      </div>
      <form onSubmit={(e) => { e.preventDefault(); run(async () => { await patch("/api/accounts/users/me/", form); await loadMe(); }); }}>
        <label>Name<input value={form.full_name} onChange={(e) => setForm({ ...form, full_name: e.target.value })} maxLength={64} /></label>
        <label>Bio<textarea value={form.bio} onChange={(e) => setForm({ ...form, bio: e.target.value })} maxLength={150} /></label>
        <label>Website<input value={form.website} onChange={(e) => setForm({ ...form, website: e.target.value })} placeholder="https://" /></label>
        {status}
        <button className="primary">Save profile</button>
      </form>
    </section>
  );
}

interface SettingsT { is_private: boolean; show_presence: boolean; notifications: Record<string, Record<string, boolean>> }

function Privacy() {
  const [s, setS] = useState<SettingsT | null>(null);
  const { run, status } = useSaved();
  useEffect(() => { get<SettingsT>("/api/accounts/settings/").then(setS).catch(() => {}); }, []);
  if (!s) return null;
  const change = (body: Partial<SettingsT>) => run(async () => setS(await patch<SettingsT>("/api/accounts/settings/", body)));
  const kinds = Object.keys(s.notifications);
  const channels = Array.from(new Set(kinds.flatMap((k) => Object.keys(s.notifications[k]))));
  return (
    <section>
      <h2>Privacy and presence</h2>
      <label className="check"><input type="checkbox" checked={s.is_private} onChange={(e) => change({ is_private: e.target.checked })} /> Private account</label>
      <label className="check"><input type="checkbox" checked={s.show_presence} onChange={(e) => change({ show_presence: e.target.checked })} /> Show when I'm active</label>
      <h2>Notifications</h2>
      <table className="prefs">
        <thead><tr><th scope="col">Kind</th>{channels.map((c) => <th scope="col" key={c}>{c.replace("_", " ")}</th>)}</tr></thead>
        <tbody>
          {kinds.map((k) => (
            <tr key={k}><th scope="row">{k.replace(/_/g, " ")}</th>
              {channels.map((c) => (
                <td key={c}><input type="checkbox" aria-label={`${k.replace(/_/g, " ")} by ${c}`} checked={!!s.notifications[k][c]}
                  onChange={(e) => change({ notifications: { [k]: { [c]: e.target.checked } } })} /></td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      {status}
    </section>
  );
}

/** The accounts the viewer blocks, a page at a time as the API pages them, each with its unblock:
 * a blocked profile answers 404 to its blocker too, so this is where a block is undone. */
function BlockedAccounts() {
  const { items, setItems, more, loading, error, done } = usePaged<UserBrief>("/api/accounts/blocks/");
  const { run, status } = useSaved();
  const unblock = (u: UserBrief) => run(async () => {
    await post(`/api/accounts/users/${u.id}/unblock/`);
    setItems((list) => list.filter((x) => x.id !== u.id));
  }, `Unblocked ${u.username}.`);
  return (
    <section id="blocked" aria-labelledby="blocked-title">
      <h2 id="blocked-title">Blocked accounts</h2>
      <ul className="plain" aria-label="Blocked accounts">
        {items.map((u) => (
          <li key={u.id} className="row between">
            <UserLink user={u} />
            <button onClick={() => unblock(u)}>Unblock {u.username}</button>
          </li>
        ))}
      </ul>
      {!loading && done && !items.length && !error && <p className="muted small">You haven't blocked anyone.</p>}
      {loading && <p className="muted small" role="status">Loading…</p>}
      {!done && !loading && <button className="link" onClick={more}>Show more blocked accounts</button>}
      <ErrorLine error={error} />
      {status}
    </section>
  );
}

function Password() {
  const [form, setForm] = useState({ old_password: "", new_password: "" });
  const { run, status } = useSaved();
  return (
    <section>
      <h2>Password</h2>
      <form onSubmit={(e) => { e.preventDefault(); run(() => post("/api/accounts/password/", form), "Password changed; your other sessions are logged out."); }}>
        <label>Current password<input type="password" autoComplete="current-password" value={form.old_password} onChange={(e) => setForm({ ...form, old_password: e.target.value })} required /></label>
        <label>New password<input type="password" autoComplete="new-password" value={form.new_password} onChange={(e) => setForm({ ...form, new_password: e.target.value })} required /></label>
        {status}
        <button>Change password</button>
      </form>
    </section>
  );
}

interface SessionT { id: string; device?: string; user_agent?: string; address?: string; ip?: string; last_used_at?: string; current?: boolean }

function Sessions() {
  const [list, setList] = useState<SessionT[] | null>(null);
  const { run, status } = useSaved();
  const load = () => get<Page<SessionT> | SessionT[]>("/api/accounts/sessions/").then((r) => setList(Array.isArray(r) ? r : r.results));
  useEffect(() => { load().catch(() => setList([])); }, []);
  return (
    <section>
      <h2>Sessions</h2>
      <ul className="plain">
        {(list ?? []).map((s) => (
          <li key={s.id} className="row between">
            <span>{s.device || s.user_agent || "Device"} · {s.address || s.ip || ""} {s.current && <strong>(this one)</strong>}
              <span className="muted small block">{s.last_used_at ? new Date(s.last_used_at).toLocaleString() : ""}</span></span>
            {!s.current && <button onClick={() => run(async () => { await del(`/api/accounts/sessions/${s.id}/`); await load(); }, "Logged out.")}>Log out</button>}
          </li>
        ))}
      </ul>
      {status}
    </section>
  );
}

function TwoFactor() {
  const [setup, setSetup] = useState<{ secret: string; otpauth_url: string } | null>(null);
  const [codes, setCodes] = useState<string[] | null>(null);
  const [code, setCode] = useState("");
  const [password, setPassword] = useState("");
  const { run, status } = useSaved();
  return (
    <section>
      <h2>Two-factor authentication</h2>
      {codes ? (
        <div><p>Two-factor is on. Keep these recovery codes somewhere safe:</p><ul className="codes">{codes.map((c) => <li key={c}><code>{c}</code></li>)}</ul></div>
      ) : setup ? (
        <form onSubmit={(e: FormEvent) => { e.preventDefault(); run(async () => setCodes((await post<{ recovery_codes: string[] }>("/api/accounts/2fa/confirm/", { code })).recovery_codes), "Two-factor is on."); }}>
          <p>Add this key to your authenticator app: <code>{setup.secret}</code> (<a href={setup.otpauth_url}>open in the app</a>)</p>
          <label>Code from the app<input inputMode="numeric" autoComplete="one-time-code" value={code} onChange={(e) => setCode(e.target.value)} required /></label>
          <button className="primary">Turn on</button>
        </form>
      ) : (
        <button onClick={() => run(async () => setSetup(await post("/api/accounts/2fa/setup/")), "")}>Set up two-factor</button>
      )}
      <details>
        <summary>Turn two-factor off</summary>
        <form onSubmit={(e: FormEvent) => { e.preventDefault(); run(() => post("/api/accounts/2fa/disable/", { password, code }), "Two-factor is off."); }}>
          <label>Password<input type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required /></label>
          <label>Code<input inputMode="numeric" value={code} onChange={(e) => setCode(e.target.value)} required /></label>
          <button>Turn off</button>
        </form>
      </details>
      {status}
    </section>
  );
}

interface ExportT { status: string; url?: string; expires_at?: string }

/** The account's data export as the server has it, so every browser shows the same: the API
 * answers 404 while none was ever asked for, which is "none yet", not a failure. */
function Export() {
  const [state, setState] = useState<ExportT | null>(null);
  const [error, setError] = useState<unknown>(null);
  const { run, status } = useSaved();
  const check = () => get<ExportT>("/api/accounts/export/").then((s) => { setError(null); setState(s); }, (e) => {
    if (e instanceof ApiError && e.status === 404) { setError(null); setState({ status: "none" }); } else setError(e);
  });
  useEffect(() => { check(); }, []);
  useEffect(() => {
    if (state?.status !== "pending") return;
    const t = setTimeout(check, 2000);
    return () => clearTimeout(t);
  }, [state]);
  return (
    <section>
      <h2>Download your data</h2>
      {state?.status === "ready" && state.url && <p><a href={state.url}>Download the archive</a> {state.expires_at && <span className="muted small">(until {new Date(state.expires_at).toLocaleString()})</span>}</p>}
      {state?.status === "pending" && <p role="status">Preparing your archive…</p>}
      {state?.status === "none" && <p className="muted small">No export yet.</p>}
      <ErrorLine error={error} />
      <button onClick={() => run(async () => {
        setState(await post<ExportT>("/api/accounts/export/"));
      }, "Export started.")}>Request an export</button>
      {status}
    </section>
  );
}

export function logOut() {
  const refresh = tokens.refresh;
  if (refresh) post("/api/token/revoke/", { refresh }).catch(() => {});
  realtime.stop();
  tokens.set(null);
  me.set(null);
  navigate("/login", true);
}

function DeleteAccount() {
  const [password, setPassword] = useState("");
  const { run, status } = useSaved();
  return (
    <section className="danger">
      <h2>Delete account</h2>
      <p className="small">Your account is hidden at once and erased after 30 days unless you log in again.</p>
      <form onSubmit={(e) => { e.preventDefault(); if (confirm("Delete your account?")) run(async () => { await api("DELETE", "/api/accounts/users/me/", { password }); logOut(); }); }}>
        <label>Password<input type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required /></label>
        <button className="danger">Delete my account</button>
      </form>
      {status}
    </section>
  );
}

export function Settings() {
  const profile = useStore(me);
  // /settings#blocked (from a block's note): the client router does not scroll to a fragment
  useEffect(() => { if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView(); }, []);
  if (!profile) return null;
  return (
    <main className="page settings">
      <h1>Settings</h1>
      <ProfileForm profile={profile} />
      <Privacy />
      <BlockedAccounts />
      <CloseFriends />
      <Password />
      <Sessions />
      <TwoFactor />
      <Export />
      <section><h2>Log out</h2><button onClick={logOut}>Log out</button></section>
      <DeleteAccount />
    </main>
  );
}
