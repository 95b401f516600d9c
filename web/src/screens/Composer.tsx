// A new post (1 to 10 photos, uploaded as soon as chosen, with progress) or a new story.
import { useRef, useState } from "react";
import { ApiError, Media, post, Post, upload } from "../api";
import { navigate } from "../router";
import { ErrorLine, Photo, useSubmit } from "../ui";

/** The API's caption limit (posts and stories), in characters as it counts them: code points. */
export const CAPTION_MAX = 2200;

/** What the API takes (it sniffs the bytes; a type the browser names and that is not one of these
 * is refused here without sending it). */
const TYPES = ["image/jpeg", "image/png", "image/webp", "image/heic", "image/heif", "video/mp4"];
const KINDS = "JPEG, PNG, WebP or HEIC photos and MP4 videos";

interface Problem { text: string; retry: boolean }
interface Item {
  key: string; name: string; file: File; preview: string | null; progress: number; media?: Media; problem?: Problem;
}

const length = (s: string) => Array.from(s).length;

/** An edit of `before` into `after` that takes no more of what was typed or pasted than fits in
 * `max` characters: the text around the edit stays as it was, the inserted part is cut. */
export function withinLimit(before: string, after: string, max: number): string {
  const next = Array.from(after);
  if (next.length <= max) return after;
  const old = Array.from(before);
  let head = 0;
  while (head < old.length && head < next.length && old[head] === next[head]) head++;
  let tail = 0;
  while (tail < old.length - head && tail < next.length - head && old[old.length - 1 - tail] === next[next.length - 1 - tail]) tail++;
  const room = Math.max(0, max - head - tail);
  return [...next.slice(0, head), ...next.slice(head, next.length - tail).slice(0, room), ...next.slice(next.length - tail)].join("");
}

function megabytes(bytes: number): string {
  const mb = bytes / (1024 * 1024);
  return `${mb >= 10 ? Math.round(mb) : Math.round(mb * 10) / 10} MB`;
}

/** Why an upload failed, in words for the person who chose the file, and whether trying the
 * same file again can help. */
export function uploadProblem(name: string, err: unknown): Problem {
  const e = err instanceof ApiError ? err : null;
  if (e?.status === 413) {
    const limit = /(\d+) bytes/.exec(e.message);
    return { text: `${name} is too big to upload${limit ? ` (the limit is ${megabytes(Number(limit[1]))})` : ""}. Pick a smaller file.`, retry: false };
  }
  if (e?.status === 415) return { text: `${name} can't be posted: glint takes ${KINDS}. Pick another file.`, retry: false };
  if (e?.status === 400) return { text: `${name} can't be posted: ${e.message} Pick another file.`, retry: false };
  if (e?.status === 0) return { text: `${name} didn't upload: can't reach glint. Check your connection and try again.`, retry: true };
  if (e?.status === 429) return { text: `${name} didn't upload: too many uploads just now. Wait a moment and try again.`, retry: true };
  if (e && e.status >= 500) return { text: `${name} didn't upload: something went wrong on glint's side. Try again.`, retry: true };
  return { text: `${name} didn't upload: ${e ? e.message : String(err)}`, retry: true };
}

export function Composer() {
  const [items, setItems] = useState<Item[]>([]);
  const [caption, setCaption] = useState("");
  const [location, setLocation] = useState("");
  const [story, setStory] = useState(false);
  const [closeFriends, setCloseFriends] = useState(false);
  const picker = useRef<HTMLInputElement>(null);

  const update = (key: string, patch: Partial<Item>) => setItems((list) => list.map((i) => (i.key === key ? { ...i, ...patch } : i)));

  function send(item: Item) {
    update(item.key, { problem: undefined, progress: 0 });
    upload(item.file, (p) => update(item.key, { progress: p })).then(
      (media) => update(item.key, { media, progress: 1 }),
      (err) => update(item.key, { problem: uploadProblem(item.name, err) }),
    );
  }

  function choose(files: FileList | null) {
    if (!files) return;
    const added: Item[] = Array.from(files).slice(0, 10 - items.length).map((f, n) => ({
      key: `${Date.now()}-${n}-${f.name}`, name: f.name, file: f, progress: 0,
      preview: f.type.startsWith("image/") ? URL.createObjectURL(f) : null,
      problem: f.type && !TYPES.includes(f.type) ? { text: `${f.name} can't be posted: glint takes ${KINDS}. Pick another file.`, retry: false } : undefined,
    }));
    setItems((list) => [...list, ...added]);
    for (const a of added) if (!a.problem) send(a);
  }

  function remove(item: Item) {
    if (item.preview) URL.revokeObjectURL(item.preview);
    setItems((l) => l.filter((x) => x.key !== item.key));
    picker.current?.focus();  // where the removed item's button was: choose another
  }

  function changeCaption(value: string) {
    setCaption(withinLimit(caption, value, CAPTION_MAX));
  }

  const failed = items.some((i) => i.problem);
  const ready = items.length > 0 && items.every((i) => i.media);
  const count = length(caption);

  const { submit, busy, error } = useSubmit(async () => {
    const ids = items.map((i) => i.media!.id);
    if (story) {
      for (const id of ids) await post("/api/stories/", { media_id: id, caption, close_friends_only: closeFriends });
      navigate("/");
    } else {
      const body: Record<string, unknown> = { caption, media_ids: ids };
      if (location.trim()) body.location = { name: location.trim() };
      const created = await post<Post>("/api/posts/", body);
      navigate(`/p/${created.id}`);
    }
  });

  return (
    <main className="page composer">
      <h1>New {story ? "story" : "post"}</h1>
      <form onSubmit={submit}>
        <fieldset className="row">
          <legend className="sr-only">Kind</legend>
          <label className="check"><input type="radio" name="kind" checked={!story} onChange={() => setStory(false)} /> Post</label>
          <label className="check"><input type="radio" name="kind" checked={story} onChange={() => setStory(true)} /> Story</label>
        </fieldset>
        <label className="file">Choose photos
          <input ref={picker} type="file" name="photos" accept="image/*,video/mp4" multiple onChange={(e) => { choose(e.target.files); e.target.value = ""; }} />
        </label>
        <ul className="uploads">
          {items.map((i) => (
            <li key={i.key} className={i.problem ? "failed" : undefined}>
              {i.media ? <Photo media={i.media} alt={i.name} sizes="120px" />
                : i.preview ? <img src={i.preview} alt={i.name} onError={() => { URL.revokeObjectURL(i.preview!); update(i.key, { preview: null }); }} />
                : <span className="no-preview">{i.name}</span>}
              {!i.problem && <progress max={1} value={i.progress} aria-label={`Upload of ${i.name}`} />}
              {i.problem && <p className="error" role="alert">{i.problem.text}</p>}
              {i.problem?.retry && <button type="button" onClick={() => send(i)}>Retry {i.name}</button>}
              <button type="button" className="link" onClick={() => remove(i)}>Remove {i.name}</button>
            </li>
          ))}
        </ul>
        <label>Caption<textarea name="caption" value={caption} onChange={(e) => changeCaption(e.target.value)} rows={3}
          aria-describedby="caption-count" placeholder="Write a caption… #hashtags and @mentions work" /></label>
        <p id="caption-count" className={"small counter " + (count >= CAPTION_MAX ? "error" : "muted")}>
          {count.toLocaleString("en")} / {CAPTION_MAX.toLocaleString("en")}
          {count >= CAPTION_MAX && <span role="status"> — captions can be up to {CAPTION_MAX.toLocaleString("en")} characters.</span>}
        </p>
        {story
          ? <label className="check"><input type="checkbox" checked={closeFriends} onChange={(e) => setCloseFriends(e.target.checked)} /> Close friends only</label>
          : <label>Location<input name="location" value={location} onChange={(e) => setLocation(e.target.value)} maxLength={200} placeholder="Add a place" /></label>}
        <ErrorLine error={error} />
        {failed && <p className="small muted" id="share-hint">Retry or remove the file that didn't upload, or choose another, to share.</p>}
        <button className="primary" disabled={!ready || busy} aria-describedby={failed ? "share-hint" : undefined}>{busy ? "Sharing…" : "Share"}</button>
      </form>
    </main>
  );
}
