-- The W3C traceparent of the request that wrote an event, so the consumers that handle it
-- continue that request's trace (NULL when tracing is off).
ALTER TABLE outbox ADD COLUMN traceparent text;
