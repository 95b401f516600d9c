-- media, posts and what hangs off them: hashtags, mentions, locations, comments, likes, saves.

-- An uploaded file and its renditions in S3. A row is "attached" once a post (story, avatar,
-- message) uses it; rows never attached are removed after a day, and rows whose post was deleted
-- (deleted_at set) have their S3 objects removed later by the media job.
CREATE TABLE media (
    id bigint PRIMARY KEY DEFAULT next_id(),
    owner_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('image', 'video')),
    content_type text NOT NULL,
    size_bytes bigint NOT NULL,
    width integer,
    height integer,
    placeholder text NOT NULL DEFAULT '',
    original_key text NOT NULL,
    -- {"320.webp": {"key": "...", "width": 320, "height": 240, "content_type": "image/webp"}, ...}
    renditions jsonb NOT NULL DEFAULT '{}',
    attached_at timestamptz,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_unattached ON media (created_at) WHERE attached_at IS NULL;
CREATE INDEX media_deleted ON media (deleted_at) WHERE deleted_at IS NOT NULL;

-- one row per place; the same name and coordinates reuse it
CREATE TABLE locations (
    id bigint PRIMARY KEY DEFAULT next_id(),
    name text NOT NULL,
    lat double precision,
    lng double precision,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX locations_place ON locations
    (lower(name), coalesce(lat, 'NaN'::double precision), coalesce(lng, 'NaN'::double precision));

-- the counters are kept exact by the writers: changed only when a like/comment row really
-- appeared or disappeared, in the same transaction
CREATE TABLE posts (
    id bigint PRIMARY KEY DEFAULT next_id(),
    author_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    caption text NOT NULL DEFAULT '',
    location_id bigint REFERENCES locations (id),
    like_count integer NOT NULL DEFAULT 0,
    comment_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    edited_at timestamptz
);
CREATE INDEX posts_author ON posts (author_id, id DESC);
CREATE INDEX posts_location ON posts (location_id, id DESC) WHERE location_id IS NOT NULL;

CREATE TABLE post_media (
    post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    position smallint NOT NULL,
    media_id bigint NOT NULL UNIQUE REFERENCES media (id),
    PRIMARY KEY (post_id, position)
);

CREATE TABLE hashtags (
    id bigint PRIMARY KEY DEFAULT next_id(),
    name text NOT NULL UNIQUE,  -- lower case, without '#'
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE post_hashtags (
    hashtag_id bigint NOT NULL REFERENCES hashtags (id) ON DELETE CASCADE,
    post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    PRIMARY KEY (hashtag_id, post_id)
);
CREATE INDEX post_hashtags_post ON post_hashtags (post_id);

CREATE TABLE mentions (
    post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id)
);
CREATE INDEX mentions_user ON mentions (user_id, post_id DESC);

-- one level of replies: a reply's parent is always a top-level comment of the same post
CREATE TABLE comments (
    id bigint PRIMARY KEY DEFAULT next_id(),
    post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    author_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    parent_id bigint REFERENCES comments (id) ON DELETE CASCADE,
    text text NOT NULL,
    like_count integer NOT NULL DEFAULT 0,
    reply_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comments_top ON comments (post_id, id) WHERE parent_id IS NULL;
CREATE INDEX comments_replies ON comments (parent_id, id) WHERE parent_id IS NOT NULL;
CREATE INDEX comments_author ON comments (author_id);

CREATE TABLE comment_likes (
    comment_id bigint NOT NULL REFERENCES comments (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (comment_id, user_id)
);

-- id orders a post's likers and a user's saves newest first and serves as their cursor
CREATE TABLE likes (
    post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id bigint NOT NULL DEFAULT next_id(),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id)
);
CREATE INDEX likes_post_order ON likes (post_id, id DESC);
CREATE INDEX likes_user ON likes (user_id, post_id);

CREATE TABLE saves (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    id bigint NOT NULL DEFAULT next_id(),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, post_id)
);
CREATE INDEX saves_user_order ON saves (user_id, id DESC);
CREATE INDEX saves_post ON saves (post_id);
