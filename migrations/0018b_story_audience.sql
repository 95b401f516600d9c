-- who may see a story, once for every reader (the story page and its replies and reports, the
-- tray, a story shared in a conversation): its owner; anyone else whom visible_to lets see the
-- owner's things, and, for a close-friends story, only the people on the owner's list.
CREATE FUNCTION story_visible_to(viewer bigint, owner bigint, close_friends_only boolean) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT viewer = owner OR (visible_to(viewer, owner) AND (NOT close_friends_only OR EXISTS (
        SELECT 1 FROM close_friends c WHERE c.owner_id = owner AND c.friend_id = viewer)))
$$;
