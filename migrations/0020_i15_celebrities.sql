-- The celebrity merge without a walk over the reader's follows (storage/timelines.py).
--
-- A home page merges the recent posts of the followed accounts with at least
-- GLINT_CELEBRITY_THRESHOLD followers (they are not fanned out). Finding them walked every follow
-- of the reader and looked each followee up: a quarter of the page query's time, and almost always
-- for nothing. `celebrities` holds every account with at least `celebrity_floor.followers`
-- followers (and some that have fewer since): a page joins it with the reader's follows and still
-- tests followers_count against its own threshold, so the answer is the same as the walk's as long
-- as the floor is at most that threshold.
--
-- The follower count's UPDATE adds an account the moment it reaches the floor (storage/graph.py);
-- an account is never taken out when it falls back, so a count that drops and comes back needs no
-- care. A serving process lowers the floor to its threshold when it starts (never raises it: other
-- processes may serve a lower one), and then adds the accounts already past it, under a lock that
-- waits for the follows in flight (timelines.keep_celebrities).
CREATE TABLE celebrities (
    user_id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE celebrity_floor (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    followers integer NOT NULL
);

-- no account is listed until a process says what it merges
INSERT INTO celebrity_floor (followers) VALUES (2147483647);
