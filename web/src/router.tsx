// A small history router: the path is state; <Link> and navigate() push onto history.
import { AnchorHTMLAttributes, MouseEvent, useEffect, useState } from "react";

const listeners = new Set<() => void>();

export function navigate(to: string, replace = false) {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  listeners.forEach((l) => l());
  window.scrollTo(0, 0);
}

window.addEventListener("popstate", () => listeners.forEach((l) => l()));

export function useLocation(): { path: string; query: URLSearchParams } {
  const [, setTick] = useState(0);
  useEffect(() => {
    const l = () => setTick((t) => t + 1);
    listeners.add(l);
    return () => { listeners.delete(l); };
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

/** Match "/u/:id" against a path: the params, or null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split("/").filter(Boolean);
  const s = path.split("/").filter(Boolean);
  if (p.length !== s.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(":")) params[p[i].slice(1)] = decodeURIComponent(s[i]);
    else if (p[i] !== s[i]) return null;
  }
  return params;
}

export function Link({ to, onClick, ...rest }: AnchorHTMLAttributes<HTMLAnchorElement> & { to: string }) {
  const go = (e: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(to);
  };
  return <a href={to} onClick={go} {...rest} />;
}

const AUTH_PAGES = ["/login", "/register", "/verify", "/reset"];

/** The login page, remembering where the visitor was headed (home needs no reminder). */
export function loginPath(from: string): string {
  return from === "/" || from === "" ? "/login" : `/login?next=${encodeURIComponent(from)}`;
}

/** Where a login returns to: ?next= when it is a path in this app (not another site, not an
 * auth page), else home. */
export function nextPath(query: URLSearchParams): string {
  const next = query.get("next");
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.includes("\\")) return "/";
  if (AUTH_PAGES.includes(new URL(next, location.origin).pathname)) return "/";
  return next;
}
