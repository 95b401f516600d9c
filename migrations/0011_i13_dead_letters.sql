-- Events a consumer gave up on after every retry: kept to be listed and replayed, never lost.
-- kind 'outage': the last failure was a store being away, so the event is replayed automatically
-- at next_attempt_at (backed off after each failed replay); kind 'bad_event': only an operator's
-- `glint events dead-letters replay` sends it again.
CREATE TABLE dead_letters (
    id bigint PRIMARY KEY DEFAULT next_id(),
    consumer text NOT NULL,
    event_id uuid NOT NULL,
    event jsonb NOT NULL,
    kind text NOT NULL CHECK (kind IN ('outage', 'bad_event')),
    error text NOT NULL,
    replays integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz,
    UNIQUE (consumer, event_id)
);
CREATE INDEX dead_letters_due ON dead_letters (next_attempt_at) WHERE replayed_at IS NULL;
CREATE INDEX dead_letters_pending ON dead_letters (id) WHERE replayed_at IS NULL;
