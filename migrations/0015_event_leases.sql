-- Kafka partitions are shared out among a consumer's processes by leases in PostgreSQL rather
-- than by Kafka's group protocol: a process that starts takes the partitions nobody holds at
-- once (no join to wait for), one that stops hands them back, one that dies loses them when its
-- lease runs out. Offsets are kept here too, written after the events before them are handled.

CREATE TABLE event_members (
    consumer text NOT NULL,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (consumer, holder)
);

CREATE TABLE event_leases (
    consumer text NOT NULL,
    partition integer NOT NULL,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (consumer, partition)
);

CREATE TABLE event_offsets (
    consumer text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

-- One round of a holder's lease keeping, in one call: renew its membership and leases, give back
-- what is beyond its fair share, take free or expired partitions up to it, and return the
-- partitions it holds now. The fair share is ceil(partitions / live members).
CREATE FUNCTION event_lease_round(p_consumer text, p_holder text, p_partitions integer, p_ttl_ms integer)
RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    ttl interval := make_interval(secs => p_ttl_ms / 1000.0);
    members integer;
    share integer;
    held integer[];
BEGIN
    -- one round per consumer at a time, so two holders never both count a partition as free
    PERFORM pg_advisory_xact_lock(hashtext('event_leases:' || p_consumer));
    INSERT INTO event_members (consumer, holder, expires_at) VALUES (p_consumer, p_holder, now() + ttl)
    ON CONFLICT (consumer, holder) DO UPDATE SET expires_at = EXCLUDED.expires_at;
    DELETE FROM event_members WHERE consumer = p_consumer AND expires_at < now();
    DELETE FROM event_leases WHERE consumer = p_consumer AND (expires_at < now() OR partition >= p_partitions);
    UPDATE event_leases SET expires_at = now() + ttl WHERE consumer = p_consumer AND holder = p_holder;
    SELECT count(*) INTO members FROM event_members WHERE consumer = p_consumer;
    share := ceil(p_partitions::numeric / greatest(members, 1));
    -- beyond the share: hand back the highest partitions
    DELETE FROM event_leases WHERE consumer = p_consumer AND holder = p_holder AND partition IN (
        SELECT partition FROM event_leases WHERE consumer = p_consumer AND holder = p_holder
        ORDER BY partition OFFSET share);
    -- below it: take free partitions
    INSERT INTO event_leases (consumer, partition, holder, expires_at)
    SELECT p_consumer, p, p_holder, now() + ttl
    FROM generate_series(0, p_partitions - 1) p
    WHERE NOT EXISTS (SELECT 1 FROM event_leases l WHERE l.consumer = p_consumer AND l.partition = p)
    ORDER BY p
    LIMIT greatest(share - (SELECT count(*) FROM event_leases WHERE consumer = p_consumer AND holder = p_holder), 0);
    SELECT coalesce(array_agg(partition ORDER BY partition), '{}') INTO held
    FROM event_leases WHERE consumer = p_consumer AND holder = p_holder;
    RETURN held;
END;
$$;
