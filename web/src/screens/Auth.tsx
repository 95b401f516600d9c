// Signing up, verifying the e-mail, logging in (with a 2FA code when asked), resetting a password.
import { useEffect, useState } from "react";
import { ApiError, api, post, tokens } from "../api";
import { Link, navigate, nextPath } from "../router";
import { loadMe } from "../state";
import { ErrorLine, useSubmit } from "../ui";

function AuthCard({ title, children }: { title: string; children: React.ReactNode }) {
  return (
    <main className="auth">
      <div className="card">
        <h1 className="logo">glint</h1>
        <h2>{title}</h2>
        {children}
      </div>
    </main>
  );
}

export function Login() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [needCode, setNeedCode] = useState(false);
  const { submit, busy, error } = useSubmit(async () => {
    const body: Record<string, string> = { username, password };
    if (needCode) body.code = code;
    tokens.set(await api<{ access: string; refresh: string }>("POST", "/api/token/", body));
    await loadMe();
    navigate(nextPath(new URLSearchParams(location.search)), true);
  }, (err) => {
    if (!(err instanceof ApiError && err.code === "2fa_required")) return err;
    setNeedCode(true);
    return needCode ? err : null;
  });

  return (
    <AuthCard title="Log in">
      <form onSubmit={submit}>
        <label>Username or e-mail<input name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required /></label>
        <label>Password<input name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required /></label>
        {needCode && (
          <label>Two-factor code (or a recovery code)
            <input name="code" inputMode="numeric" autoComplete="one-time-code" value={code} onChange={(e) => setCode(e.target.value)} required autoFocus />
          </label>
        )}
        <ErrorLine error={error} />
        <button className="primary" disabled={busy}>Log in</button>
      </form>
      <p><Link to="/reset">Forgot your password?</Link></p>
      <p>New to glint? <Link to={"/register" + location.search}>Sign up</Link></p>
    </AuthCard>
  );
}

export function Register() {
  const [form, setForm] = useState({ username: "", email: "", full_name: "", password: "" });
  const set = (k: keyof typeof form) => (e: React.ChangeEvent<HTMLInputElement>) => setForm({ ...form, [k]: e.target.value });
  const { submit, busy, error } = useSubmit(async () => {
    await post("/api/accounts/users/register/", form);
    tokens.set(await post<{ access: string; refresh: string }>("/api/token/", { username: form.username, password: form.password }));
    await loadMe();
    navigate(nextPath(new URLSearchParams(location.search)), true);
  });

  return (
    <AuthCard title="Sign up">
      <form onSubmit={submit}>
        <label>Username<input name="username" autoComplete="username" value={form.username} onChange={set("username")} required /></label>
        <label>E-mail<input name="email" type="email" autoComplete="email" value={form.email} onChange={set("email")} required /></label>
        <label>Full name<input name="full_name" autoComplete="name" value={form.full_name} onChange={set("full_name")} /></label>
        <label>Password<input name="password" type="password" autoComplete="new-password" value={form.password} onChange={set("password")} required /></label>
        <ErrorLine error={error} />
        <button className="primary" disabled={busy}>Sign up</button>
      </form>
      <p>Have an account? <Link to={"/login" + location.search}>Log in</Link></p>
    </AuthCard>
  );
}

export function Verify({ token }: { token: string | null }) {
  const [state, setState] = useState<"working" | "done" | "ask" | unknown>(token ? "working" : "ask");
  const [pasted, setPasted] = useState("");
  const verify = (t: string) => { setState("working"); post("/api/accounts/verify-email/", { token: t }).then(() => setState("done"), setState); };
  useEffect(() => { if (token) verify(token); }, [token]);
  return (
    <AuthCard title="Verify your e-mail">
      {state !== "working" && state !== "done" && (
        <form onSubmit={(e) => { e.preventDefault(); verify(pasted.trim()); }}>
          <label>The token from the e-mail<input value={pasted} onChange={(e) => setPasted(e.target.value)} required /></label>
          <button className="primary">Verify</button>
        </form>
      )}
      {state === "working" && <p role="status">Verifying…</p>}
      {state === "done" && <p role="status">Your e-mail is verified. <Link to="/">Go to glint</Link></p>}
      {state !== "working" && state !== "done" && state !== "ask" && <ErrorLine error={state} />}
    </AuthCard>
  );
}

export function Reset({ token }: { token: string | null }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [done, setDone] = useState("");
  const { submit, error } = useSubmit(async () => {
    if (token) {
      await post("/api/accounts/password-reset/confirm/", { token, new_password: password });
      setDone("Your password is changed. You can log in with it now.");
    } else {
      await post("/api/accounts/password-reset/", { email });
      setDone("If that address has an account, a reset link is on its way.");
    }
  });

  return (
    <AuthCard title="Reset your password">
      {done ? <p role="status">{done} <Link to="/login">Log in</Link></p> : (
        <form onSubmit={submit}>
          {token
            ? <label>New password<input name="new_password" type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} required /></label>
            : <label>E-mail<input name="email" type="email" autoComplete="email" value={email} onChange={(e) => setEmail(e.target.value)} required /></label>}
          <ErrorLine error={error} />
          <button className="primary">{token ? "Set password" : "Send reset link"}</button>
        </form>
      )}
      <p><Link to="/login">Back to log in</Link></p>
    </AuthCard>
  );
}
