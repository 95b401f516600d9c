-- The file a user's avatar shows as in lists: the smallest WebP rendition of the avatar's media
-- (its S3 key), or NULL while there is none (no avatar, a video, a row removed).
--
-- Every user a list names (a post's author, a commenter, a liker, a follower or followee, a
-- search result, a story's owner and viewers) carries `avatar_url`, a signed link to this file,
-- so a client draws the photo without asking for each user's profile and then its media. The rendition is read from
-- the media row, not from today's GLINT_MEDIA_RENDITION_WIDTHS: an avatar made under other widths
-- keeps the files it has.

CREATE FUNCTION avatar_key(media_id bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT r.value ->> 'key'
    FROM media m CROSS JOIN LATERAL jsonb_each(m.renditions) r
    WHERE m.id = media_id AND m.kind = 'image' AND r.key LIKE '%.webp'
    ORDER BY (r.value ->> 'width')::int, r.key
    LIMIT 1
$$;
