-- The celebrity merge without a walk over the reader's follows (storage/timelines.py).
--
-- A home page merges the recent posts of the followed accounts with at least
-- GLINT_CELEBRITY_THRESHOLD followers (they are not fanned out). Finding them walked every follow
-- of the reader and looked each followee up: a quarter of the page query's time, and almost always
-- for nothing. `celebrities` holds every account with at least `celebrity_floor.followers`
-- followers (and some that have fewer since, or are gone): a page joins it with the reader's
-- follows and with users, and still tests followers_count against its own threshold, so the
-- answer is the same as the walk's as long as the floor is at most that threshold.
--
-- A trigger adds an account the moment a rising follower count reaches the floor, whoever writes
-- the count (a process of any version, SQL by hand). An account is never taken out when it falls
-- back, so a count that drops and comes back needs no care; an erased account's row is deleted
-- with it (storage/erasure.py), and one left behind only joins no user. There is no foreign key:
-- its check would lock the user's row while the list is locked (below), and an erasure holding
-- that row and deleting into the list would wait the other way.
--
-- A serving process lowers the floor to its threshold when it starts (never raises it: other
-- processes may serve a lower one), and then adds the accounts already past it, holding a lock
-- that conflicts with the trigger's INSERT (timelines.keep_celebrities). A count moved before the
-- lock is committed before the backfill reads; one moved after it waits, and its INSERT then reads
-- the lowered floor (its snapshot is taken after its lock).
CREATE TABLE celebrities (
    user_id bigint PRIMARY KEY
);

CREATE TABLE celebrity_floor (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    followers integer NOT NULL
);

-- no account is listed until a process says what it merges
INSERT INTO celebrity_floor (followers) VALUES (2147483647);

CREATE FUNCTION list_celebrity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO celebrities (user_id)
    SELECT NEW.id WHERE NEW.followers_count >= (SELECT followers FROM celebrity_floor)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_list_celebrity AFTER UPDATE OF followers_count ON users
FOR EACH ROW WHEN (NEW.followers_count > OLD.followers_count) EXECUTE FUNCTION list_celebrity();
