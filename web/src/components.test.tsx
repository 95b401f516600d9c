import { act, cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Post } from "./api";
import { loginPath, nextPath } from "./router";
import { Login } from "./screens/Auth";
import { CAPTION_MAX, Composer, withinLimit } from "./screens/Composer";
import { Inbox, title } from "./screens/Messages";
import { Comments, PostCard } from "./screens/Posts";
import { me } from "./state";
import { Avatar, ErrorLine } from "./ui";

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

describe("Avatar", () => {
  it("draws a brief's avatar_url at once, asking nothing of the server", async () => {
    const fetch = vi.fn(async () => respond(404, { error: { code: "not_found", message: "Not found." } }));
    vi.stubGlobal("fetch", fetch);
    const author = { id: "23", username: "cy", full_name: "", is_verified: false, avatar_url: "/api/media/i/9/s/f/150.webp" };
    const { container } = render(<PostCard post={{ ...post, id: "23", author }} />);
    expect(container.querySelector("header .avatar img")?.getAttribute("src")).toBe("/api/media/i/9/s/f/150.webp");
    const none = render(<Avatar user={{ ...author, id: "24", avatar_url: null }} />);
    expect(none.container.querySelector(".avatar")!.textContent).toBe("C");
    expect(fetch).not.toHaveBeenCalledWith(expect.stringContaining("/api/accounts/users/"), expect.anything());
    expect(fetch).not.toHaveBeenCalledWith(expect.stringContaining("/api/media/"), expect.anything());
  });

  it("shows a photo looked up from the profile when the brief has no avatar field", async () => {
    const calls: string[] = [];
    vi.stubGlobal("fetch", vi.fn(async (url: string) => {
      calls.push(url);
      if (url === "/api/accounts/users/21/") return respond(200, { id: "21", username: "ava", avatar_media_id: "m21" });
      if (url === "/api/media/m21/") return respond(200, { id: "m21", kind: "image", width: 320, height: 320, url: "/a/",
        renditions: { "150.webp": { width: 150, height: 150 }, "320.webp": { width: 320, height: 320 } } });
      return respond(404, { error: { code: "not_found", message: "Not found." } });
    }));
    const { container } = render(<PostCard post={{ ...post, id: "21", author: { id: "21", username: "ava", full_name: "", is_verified: false } }} />);
    await waitFor(() => expect(container.querySelector("header .avatar img")?.getAttribute("src")).toBe("/a/150.webp"));
    // once per page load, however many places show the same person
    expect(calls.filter((u) => u === "/api/accounts/users/21/")).toHaveLength(1);
  });

  it("shows the initial when there is no photo, without asking when the brief says so", async () => {
    const fetch = vi.fn(async () => respond(404, { error: { code: "not_found", message: "Not found." } }));
    vi.stubGlobal("fetch", fetch);
    const { container } = render(<Avatar user={{ id: "22", username: "bo", avatar_media_id: null }} />);
    expect(container.querySelector(".avatar")!.textContent).toBe("B");
    expect(container.querySelector(".avatar img")).toBeNull();
    expect(fetch).not.toHaveBeenCalled();
  });
});

describe("Likes", () => {
  it("opens who liked the post from the count, each a link to the profile, and gives focus back on Escape", async () => {
    vi.stubGlobal("fetch", vi.fn(async (url: string) => {
      if (url === "/api/posts/10/likes/") return respond(200, { results: [
        { id: "31", username: "cat", full_name: "", is_verified: false, avatar_media_id: null },
        { id: "32", username: "dee", full_name: "", is_verified: true, avatar_media_id: null }], next: null });
      return respond(404, { error: { code: "not_found", message: "Not found." } });
    }));
    render(<PostCard post={post} />);
    const count = screen.getByRole("button", { name: "2 likes" });
    count.focus();
    fireEvent.click(count);
    const dialog = await screen.findByRole("dialog", { name: "Likes" });
    expect(dialog.contains(document.activeElement)).toBe(true);
    await waitFor(() => expect(within(dialog).getByRole("link", { name: /cat/ }).getAttribute("href")).toBe("/u/31"));
    expect(within(dialog).getByRole("link", { name: /dee/ }).getAttribute("href")).toBe("/u/32");
    fireEvent.keyDown(window, { key: "Escape" });
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(document.activeElement).toBe(screen.getByRole("button", { name: "2 likes" }));
  });

  it("shows no list to open when nobody liked it", () => {
    render(<PostCard post={{ ...post, like_count: 0 }} />);
    expect(screen.queryByRole("button", { name: /likes/ })).toBeNull();
    expect(screen.getByText("likes")).toBeTruthy();
  });
});

describe("Comments", () => {
  const comment = (id: string, author: string, authorId: string) => ({
    id, post_id: "10", parent_id: null, author: { id: authorId, username: author, full_name: "", is_verified: false },
    text: `from ${author}`, like_count: 0, reply_count: 0, liked: false, created_at: new Date().toISOString(),
  });
  function serve(deleted: string[]) {
    vi.stubGlobal("fetch", vi.fn(async (url: string, init: RequestInit) => {
      if (url.startsWith("/api/comments/?post_id=10")) return respond(200, { results: [comment("41", "ben", "2"), comment("42", "ana", "1")], next: null });
      if (init?.method === "DELETE") { deleted.push(url); return new Response(null, { status: 204 }); }
      return respond(404, { error: { code: "not_found", message: "Not found." } });
    }));
  }
  afterEach(() => { me.set(null); });

  it("lets the post's author delete someone else's comment", async () => {
    const deleted: string[] = [];
    serve(deleted);
    vi.stubGlobal("confirm", () => true);
    me.set({ ...post.author, id: "1", username: "ana" } as any);
    render(<Comments postId="10" postAuthorId="1" onAdded={() => {}} onRemoved={() => {}} />);
    const remove = await screen.findByRole("button", { name: "Delete ben's comment" });
    await act(async () => { fireEvent.click(remove); });
    expect(deleted).toEqual(["/api/comments/41/"]);
    expect(await screen.findByText("Comment deleted.")).toBeTruthy();
    expect(screen.queryByText("from ben")).toBeNull();
  });

  it("offers a commenter delete on their own comment only", async () => {
    serve([]);
    me.set({ ...post.author, id: "2", username: "ben" } as any);
    render(<Comments postId="10" postAuthorId="1" onAdded={() => {}} onRemoved={() => {}} />);
    await screen.findByText("from ana");
    expect(screen.getAllByRole("button", { name: /^Delete/ })).toHaveLength(1);
    expect(screen.getAllByRole("button", { name: "Report" })).toHaveLength(1);
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

/** An XMLHttpRequest that answers each upload from `answers` in turn. */
function fakeXhr(answers: { status: number; body: unknown }[]) {
  return class {
    status = 0; responseText = ""; upload = { onprogress: null as any };
    onload: (() => void) | null = null; onerror: (() => void) | null = null;
    open() {} setRequestHeader() {}
    send() {
      const a = answers.shift()!;
      setTimeout(() => {
        if (a.status === 0) { this.onerror?.(); return; }
        this.status = a.status; this.responseText = JSON.stringify(a.body); this.onload?.();
      });
    }
  };
}

describe("Composer", () => {
  const file = (name: string, type: string) => new File([new Uint8Array([0xff, 0xd8, 0xff])], name, { type });
  const media = { id: "m1", kind: "image", width: 10, height: 10, url: "/m/", renditions: { "150.webp": { width: 150, height: 150 } } };
  function choose(...files: File[]) {
    fireEvent.change(screen.getByLabelText("Choose photos"), { target: { files } });
  }
  beforeEach(() => { vi.stubGlobal("URL", Object.assign(URL, { createObjectURL: () => "blob:x", revokeObjectURL: () => {} })); });

  it("says why a server error failed an upload and retries it", async () => {
    vi.stubGlobal("XMLHttpRequest", fakeXhr([
      { status: 500, body: { error: { code: "internal_error", message: "Internal error." } } },
      { status: 201, body: media }]));
    render(<Composer />);
    choose(file("sea.jpg", "image/jpeg"));
    expect((await screen.findByRole("alert")).textContent).toContain("sea.jpg didn't upload: something went wrong on glint's side");
    expect((screen.getByRole("button", { name: "Share" }) as HTMLButtonElement).disabled).toBe(true);
    await act(async () => { fireEvent.click(screen.getByRole("button", { name: "Retry sea.jpg" })); });
    await waitFor(() => expect((screen.getByRole("button", { name: "Share" }) as HTMLButtonElement).disabled).toBe(false));
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("names the limit of a file too big, and refuses a type the API does not take without sending it", async () => {
    const answers = [{ status: 413, body: { error: { code: "payload_too_large", message: "This file is larger than 20971520 bytes." } } }];
    vi.stubGlobal("XMLHttpRequest", fakeXhr(answers));
    render(<Composer />);
    choose(file("huge.jpg", "image/jpeg"), file("notes.pdf", "application/pdf"));
    await waitFor(() => expect(screen.getAllByRole("alert")).toHaveLength(2));
    const [big, pdf] = screen.getAllByRole("alert").map((a) => a.textContent);
    expect(big).toBe("huge.jpg is too big to upload (the limit is 20 MB). Pick a smaller file.");
    expect(pdf).toContain("notes.pdf can't be posted: glint takes JPEG, PNG, WebP or HEIC photos and MP4 videos");
    expect(answers).toHaveLength(0);  // one upload: the PDF was not sent
    expect(screen.queryByRole("button", { name: /Retry/ })).toBeNull();
    fireEvent.click(screen.getByRole("button", { name: "Remove huge.jpg" }));
    expect(document.activeElement).toBe(screen.getByLabelText("Choose photos"));
    expect(screen.getAllByRole("alert")).toHaveLength(1);
  });

  it("counts the caption against the API's limit and takes nothing past it", () => {
    render(<Composer />);
    const caption = screen.getByLabelText("Caption") as HTMLTextAreaElement;
    fireEvent.change(caption, { target: { value: "hi 👋" } });
    expect(screen.getByText(/^4 \/ 2,200/)).toBeTruthy();  // characters as the API counts them
    fireEvent.change(caption, { target: { value: "x".repeat(CAPTION_MAX + 50) } });
    expect(caption.value).toHaveLength(CAPTION_MAX);
    expect(screen.getByRole("status").textContent).toContain("captions can be up to 2,200 characters");
    fireEvent.change(caption, { target: { value: caption.value + "y" } });
    expect(caption.value).toBe("x".repeat(CAPTION_MAX));
  });
});

describe("withinLimit", () => {
  it("keeps the text around an edit and cuts only what was typed or pasted", () => {
    expect(withinLimit("abcd", "abXYZcd", 5)).toBe("abXcd");      // a paste in the middle, cut to fit
    expect(withinLimit("abcde", "abXcde", 5)).toBe("abcde");      // at the limit a key adds nothing
    expect(withinLimit("abcde", "123456789", 5)).toBe("12345");   // all replaced by a longer paste
    expect(withinLimit("ab", "ab👋👋👋👋", 4)).toBe("ab👋👋");       // characters, not UTF-16 units
    expect(withinLimit("abc", "abcd", 5)).toBe("abcd");
  });
});

describe("Inbox", () => {
  const brief = (id: string, username: string, avatar_url: string | null = null) =>
    ({ id, username, full_name: "", is_verified: false, avatar_url });

  it("names and draws members from the list's briefs, asking for no profile", async () => {
    const group = {
      id: "70", kind: "group", title: "", member_ids: ["1", "2", "3", "4", "5", "6"],
      users: [brief("2", "ana", "/api/media/i/9/s/f/150.webp"), brief("3", "ben"), brief("4", "cy")],
      last_seq: 0, read_seq: 0, unread_count: 0, last_message: null, last_message_at: new Date().toISOString(),
    };
    const fetch = vi.fn(async (url: string) => url.startsWith("/api/conversations/")
      ? respond(200, { results: [group], next: null }) : respond(404, { error: { code: "not_found", message: "Not found." } }));
    vi.stubGlobal("fetch", fetch);
    me.set({ id: "1", username: "me", full_name: "", is_verified: false } as any);
    const { container } = render(<Inbox folder="inbox" />);
    await waitFor(() => expect(screen.getByText("ana, ben, cy and 2 others")).toBeTruthy());
    expect(container.querySelector(".conversation .avatar img")?.getAttribute("src")).toBe("/api/media/i/9/s/f/150.webp");
    expect(fetch).not.toHaveBeenCalledWith(expect.stringContaining("/api/accounts/users/"), expect.anything());
    me.set(null);
  });

  it("titles a conversation by its own title, else its named members", () => {
    expect(title({ title: "trip" }, [brief("2", "ana")], 4)).toBe("trip");
    expect(title({ title: "" }, [brief("2", "ana")], 1)).toBe("ana");
    expect(title({ title: "" }, [brief("2", "ana"), brief("3", "ben")], 2)).toBe("ana and ben");
    expect(title({ title: "" }, [brief("2", "ana")], 2)).toBe("ana and 1 other");
    expect(title({ title: "" }, [], 3)).toBe("Conversation");
  });
});
