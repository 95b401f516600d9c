-- may `viewer` see `owner`'s things? The rule of storage/graph.py as one inlinable SQL function,
-- so that a query can filter rows by it instead of asking in a second round trip.
CREATE FUNCTION visible_to(viewer bigint, owner bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM users u
        WHERE u.id = owner AND u.is_active
          AND (viewer IS NULL OR u.id = viewer OR NOT EXISTS (
                SELECT 1 FROM blocks b WHERE (b.blocker_id = u.id AND b.blocked_id = viewer)
                                          OR (b.blocker_id = viewer AND b.blocked_id = u.id)))
          AND (NOT u.is_private OR u.id = viewer OR EXISTS (
                SELECT 1 FROM follows f WHERE f.follower_id = viewer AND f.followee_id = u.id))
    )
$$;
