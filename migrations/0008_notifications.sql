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
