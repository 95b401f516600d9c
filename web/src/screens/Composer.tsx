// A new post (1 to 10 photos, uploaded as soon as chosen, with progress) or a new story.
import { useState } from "react";
import { Media, post, Post, upload } from "../api";
import { navigate } from "../router";
import { ErrorLine, Photo, useSubmit } from "../ui";

interface Item { key: string; name: string; preview: string; progress: number; media?: Media; error?: unknown }

export function Composer() {
  const [items, setItems] = useState<Item[]>([]);
  const [caption, setCaption] = useState("");
  const [location, setLocation] = useState("");
  const [story, setStory] = useState(false);
  const [closeFriends, setCloseFriends] = useState(false);

  const update = (key: string, patch: Partial<Item>) => setItems((list) => list.map((i) => (i.key === key ? { ...i, ...patch } : i)));

  function choose(files: FileList | null) {
    if (!files) return;
    const added = Array.from(files).slice(0, 10 - items.length).map((f, n) => ({
      key: `${Date.now()}-${n}-${f.name}`, name: f.name, preview: URL.createObjectURL(f), progress: 0, file: f,
    }));
    setItems((list) => [...list, ...added.map(({ file, ...rest }) => rest)]);
    for (const a of added) {
      upload(a.file, (p) => update(a.key, { progress: p })).then(
        (media) => update(a.key, { media, progress: 1 }),
        (err) => update(a.key, { error: err }),
      );
    }
  }

  const ready = items.length > 0 && items.every((i) => i.media);

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
          <input type="file" name="photos" accept="image/*,video/mp4" multiple onChange={(e) => { choose(e.target.files); e.target.value = ""; }} />
        </label>
        <ul className="uploads">
          {items.map((i) => (
            <li key={i.key}>
              {i.media ? <Photo media={i.media} alt={i.name} sizes="120px" /> : <img src={i.preview} alt={i.name} />}
              <progress max={1} value={i.progress} aria-label={`Upload of ${i.name}`} />
              <ErrorLine error={i.error} />
              <button type="button" className="link" onClick={() => setItems((l) => l.filter((x) => x.key !== i.key))}>Remove {i.name}</button>
            </li>
          ))}
        </ul>
        <label>Caption<textarea name="caption" value={caption} onChange={(e) => setCaption(e.target.value)} maxLength={2200} rows={3} placeholder="Write a caption… #hashtags and @mentions work" /></label>
        {story
          ? <label className="check"><input type="checkbox" checked={closeFriends} onChange={(e) => setCloseFriends(e.target.checked)} /> Close friends only</label>
          : <label>Location<input name="location" value={location} onChange={(e) => setLocation(e.target.value)} maxLength={200} placeholder="Add a place" /></label>}
        <ErrorLine error={error} />
        <button className="primary" disabled={!ready || busy}>{busy ? "Sharing…" : "Share"}</button>
      </form>
    </main>
  );
}
