import { act, cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Post } from "./api";
import { loginPath, nextPath } from "./router";
import { Login } from "./screens/Auth";
import { PostCard } from "./screens/Posts";
import { ErrorLine } from "./ui";

afterEach(() => { cleanup(); vi.unstubAllGlobals(); localStorage.clear(); });

function respond(status: number, body: unknown) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const post: Post = {
  id: "10", author: { id: "1", username: "ana", full_name: "Ana", is_verified: false }, caption: "Sea #blue @ben",
  media: [{ id: "m", kind: "image", width: 640, height: 480, placeholder: "#336699",
    url: "/s/", renditions: { "320.webp": { width: 320, height: 240 }, "640.webp": { width: 640, height: 480 },
      "320.jpg": { width: 320, height: 240 } } }],
  hashtags: ["blue"], location: null, like_count: 2, comment_count: 0, liked: false, saved: false,
  created_at: new Date().toISOString(), edited_at: null,
};

describe("PostCard", () => {
  it("renders the renditions as a srcset over the placeholder colour, and links hashtags", () => {
    render(<PostCard post={post} />);
    const img = screen.getByRole("img", { name: "Photo 1 of 1 by ana" });
    expect(img.getAttribute("srcset")).toBe("/s/320.webp 320w, /s/640.webp 640w");
    expect((img.parentElement as HTMLElement).style.background).toContain("rgb(51, 102, 153)");
    expect(screen.getByRole("link", { name: "#blue" }).getAttribute("href")).toBe("/search?q=%23blue");
  });

  it("likes on a double tap, optimistically, with the count the API returns", async () => {
    const fetch = vi.fn(async () => respond(200, { liked: true, like_count: 3 }));
    vi.stubGlobal("fetch", fetch);
    render(<PostCard post={post} />);
    const media = screen.getByRole("img").closest(".media")!;
    fireEvent.click(media);
    fireEvent.click(media);
    await waitFor(() => expect(screen.getByRole("button", { name: "Unlike" })).toBeTruthy());
    expect(fetch).toHaveBeenCalledWith("/api/posts/10/like/", expect.objectContaining({ method: "POST" }));
    await waitFor(() => expect(screen.getByText("3")).toBeTruthy());
  });
});

describe("Login", () => {
  it("asks for a code when the API answers 2fa_required, then sends it", async () => {
    const bodies: any[] = [];
    vi.stubGlobal("fetch", vi.fn(async (url: string, init: RequestInit) => {
      if (url === "/api/token/") {
        const body = JSON.parse(String(init.body));
        bodies.push(body);
        return body.code ? respond(401, { error: { code: "invalid_code", message: "That code is not valid." } })
          : respond(401, { error: { code: "2fa_required", message: "Enter your two-factor code." } });
      }
      return respond(404, { error: { code: "not_found", message: "Not found." } });
    }));
    render(<Login />);
    fireEvent.change(screen.getByLabelText("Username or e-mail"), { target: { value: "ana" } });
    fireEvent.change(screen.getByLabelText("Password"), { target: { value: "secret" } });
    await act(async () => { fireEvent.click(screen.getByRole("button", { name: "Log in" })); });
    const code = await screen.findByLabelText(/Two-factor code/);
    fireEvent.change(code, { target: { value: "123456" } });
    await act(async () => { fireEvent.click(screen.getByRole("button", { name: "Log in" })); });
    expect(bodies[1]).toEqual({ username: "ana", password: "secret", code: "123456" });
    // the API's words, as it put them
    expect((await screen.findByRole("alert")).textContent).toBe("That code is not valid.");
  });
});

describe("ErrorLine", () => {
  it("shows the fields the API names", async () => {
    const { ApiError } = await import("./api");
    render(<ErrorLine error={new ApiError(400, { code: "validation_error", message: "Invalid input.", fields: { username: "Taken." } })} />);
    expect(screen.getByRole("alert").textContent).toBe("Invalid input. username: Taken.");
  });
  it("says once what the message already says", async () => {
    const { ApiError } = await import("./api");
    render(<ErrorLine error={new ApiError(409, { code: "conflict", message: "This username is taken.", fields: { username: "Already taken." } })} />);
    expect(screen.getByRole("alert").textContent).toBe("This username is taken.");
    cleanup();
    render(<ErrorLine error={new ApiError(400, { code: "validation_error", message: "token: invalid or expired.", fields: { token: "Invalid or expired." } })} />);
    expect(screen.getByRole("alert").textContent).toBe("token: invalid or expired.");
  });
});

describe("nextPath", () => {
  it("returns to a path of this app only", () => {
    const next = (v: string) => nextPath(new URLSearchParams({ next: v }));
    expect(next("/admin/")).toBe("/admin/");
    expect(next("/p/5?x=1")).toBe("/p/5?x=1");
    expect(next("//evil.example/")).toBe("/");
    expect(next("https://evil.example/")).toBe("/");
    expect(next("/\\evil.example")).toBe("/");
    expect(next("/login?next=/admin/")).toBe("/");
    expect(nextPath(new URLSearchParams())).toBe("/");
    expect(loginPath("/admin/")).toBe("/login?next=%2Fadmin%2F");
    expect(loginPath("/")).toBe("/login");
  });
});
