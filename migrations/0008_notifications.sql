-- notifications (issue 6): one row per group ("ana and 3 others liked your post"), one item per
-- event that made or joined it, push device registrations, and what the push sinks leave behind.

-- a group: one kind of thing done to one target of one recipient within the grouping window;
-- updated_at is its newest item's time and orders the list
CREATE TABLE notifications (
    id bigint PRIMARY KEY DEFAULT next_id(),
    recipient_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL,
    target_type text NOT NULL,
    target_id bigint NOT NULL,
    post_id bigint,
    actor_count integer NOT NULL DEFAULT 0,
    item_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    read_at timestamptz
);
CREATE INDEX notifications_list ON notifications (recipient_id, updated_at DESC, id DESC);
CREATE INDEX notifications_unread ON notifications (recipient_id) WHERE read_at IS NULL;
CREATE INDEX notifications_group ON notifications (recipient_id, kind, target_type, target_id, created_at DESC);
CREATE INDEX notifications_target ON notifications (target_type, target_id);
CREATE INDEX notifications_age ON notifications (updated_at);

-- an item: the event behind one actor's part of a group; (event_id, recipient_id) makes a
-- redelivered event a no-op, and the columns name what undoing or deleting it removes
CREATE TABLE notification_items (
    id bigint PRIMARY KEY DEFAULT next_id(),
    notification_id bigint NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    recipient_id bigint NOT NULL,
    actor_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL,
    event_id uuid NOT NULL,
    post_id bigint,
    comment_id bigint,
    parent_comment_id bigint,
    text text,
    created_at timestamptz NOT NULL,
    UNIQUE (event_id, recipient_id)
);
CREATE INDEX notification_items_group ON notification_items (notification_id, created_at DESC);
CREATE INDEX notification_items_pair ON notification_items (actor_id, recipient_id);
CREATE INDEX notification_items_post ON notification_items (post_id) WHERE post_id IS NOT NULL;
CREATE INDEX notification_items_comment ON notification_items (comment_id) WHERE comment_id IS NOT NULL;
CREATE INDEX notification_items_parent ON notification_items (parent_comment_id) WHERE parent_comment_id IS NOT NULL;

-- where push goes: one row per device (a Web Push subscription or a mobile token endpoint)
CREATE TABLE push_devices (
    id bigint PRIMARY KEY DEFAULT next_id(),
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint text NOT NULL,
    keys jsonb NOT NULL DEFAULT '{}',
    platform text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, endpoint)
);

-- the default push sink: developers and tests read what would have been pushed here
CREATE TABLE sent_pushes (
    id bigint PRIMARY KEY DEFAULT next_id(),
    user_id bigint NOT NULL,
    device_id bigint NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sent_pushes_user ON sent_pushes (user_id, id DESC);

-- pushes the HTTP sink gave up on after its retries
CREATE TABLE push_dead_letters (
    id bigint PRIMARY KEY DEFAULT next_id(),
    user_id bigint NOT NULL,
    device_id bigint NOT NULL,
    endpoint text NOT NULL,
    payload jsonb NOT NULL,
    attempts integer NOT NULL,
    error text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_dead_letters_user ON push_dead_letters (user_id, id DESC);

-- add one item to its recipient's open group of (kind, target) or to a new group, in one round
-- trip; the group's id, or NULL when this event already made this recipient's item. The advisory
-- lock (held to the end of the caller's transaction) makes two items of one group at once join
-- one group instead of making two.
CREATE FUNCTION add_notification_item(
    p_recipient bigint, p_actor bigint, p_kind text, p_target_type text, p_target_id bigint,
    p_event uuid, p_at timestamptz, p_window interval, p_post bigint, p_comment bigint,
    p_parent_comment bigint, p_text text
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_group bigint;
    v_new_actor boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(
        p_recipient || ':' || p_kind || ':' || p_target_type || ':' || p_target_id, 6));
    IF EXISTS (SELECT 1 FROM notification_items WHERE event_id = p_event AND recipient_id = p_recipient) THEN
        RETURN NULL;
    END IF;
    SELECT id INTO v_group FROM notifications
     WHERE recipient_id = p_recipient AND kind = p_kind AND target_type = p_target_type
       AND target_id = p_target_id AND created_at > p_at - p_window
     ORDER BY created_at DESC LIMIT 1;
    IF v_group IS NULL THEN
        INSERT INTO notifications (recipient_id, kind, target_type, target_id, post_id, created_at, updated_at)
        VALUES (p_recipient, p_kind, p_target_type, p_target_id, p_post, p_at, p_at)
        RETURNING id INTO v_group;
    END IF;
    v_new_actor := NOT EXISTS (SELECT 1 FROM notification_items WHERE notification_id = v_group AND actor_id = p_actor);
    INSERT INTO notification_items (notification_id, recipient_id, actor_id, kind, event_id, post_id, comment_id,
                                    parent_comment_id, text, created_at)
    VALUES (v_group, p_recipient, p_actor, p_kind, p_event, p_post, p_comment, p_parent_comment, p_text, p_at);
    UPDATE notifications SET read_at = NULL, updated_at = greatest(updated_at, p_at), item_count = item_count + 1,
           actor_count = actor_count + v_new_actor::int
     WHERE id = v_group;
    RETURN v_group;
END;
$$;
