-- The state machine's decision for an incoming status not seen before for the message (the 36-cell table).
-- Enum order is PENDING < SENT < DELIVERED < READ < FAILED < EXPIRED, so on the delivery path a later status
-- compares greater. test/webhooks.single-status.test.ts checks every cell against the service's own table.
CREATE FUNCTION "status_decision"(cur "message_status", inc "message_status") RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN inc = cur THEN 'duplicate'
    WHEN inc = 'PENDING' THEN 'stale'
    WHEN cur IN ('FAILED', 'EXPIRED') THEN CASE WHEN inc = 'SENT' THEN 'stale' ELSE 'rejected' END
    WHEN inc IN ('FAILED', 'EXPIRED') THEN CASE WHEN cur IN ('PENDING', 'SENT') THEN 'applied' ELSE 'rejected' END
    WHEN inc > cur THEN 'applied'
    ELSE 'stale'
  END
$$;

-- Applies one status event: the webhook's common case, as one prepared call. A repeat of a stored
-- (uuid, status) is answered from the unique index alone (no row lock, no write, so no WAL flush at commit).
-- Otherwise the message row is locked, the event inserted with its decision, and the row updated for
-- `applied` / `stale` exactly as the batch statement does. `o_unsettled`: a repeat of an event still buffered
-- although its message exists, which the caller settles.
CREATE FUNCTION "apply_status_event"(
  p_uuid TEXT, p_status "message_status", p_occurred_at TIMESTAMPTZ, p_source TEXT, p_payload JSONB,
  p_error_code TEXT, p_error_message TEXT, p_wam_id TEXT,
  OUT o_outcome TEXT, OUT o_unsettled BOOLEAN
) LANGUAGE plpgsql AS $$
DECLARE
  v_current "message_status";
  v_at TIMESTAMPTZ := COALESCE(p_occurred_at, now());
  v_stored TEXT;
BEGIN
  o_unsettled := false;
  SELECT e.outcome INTO v_stored FROM message_events e WHERE e.uuid = p_uuid AND e.status = p_status;
  IF FOUND THEN
    o_outcome := 'duplicate';
    o_unsettled := v_stored = 'buffered' AND EXISTS (SELECT 1 FROM messages m WHERE m.uuid = p_uuid);
    RETURN;
  END IF;

  SELECT m.status INTO v_current FROM messages m WHERE m.uuid = p_uuid FOR UPDATE;
  o_outcome := CASE WHEN FOUND THEN status_decision(v_current, p_status) ELSE 'buffered' END;
  INSERT INTO message_events (uuid, status, outcome, occurred_at, received_at, source, payload)
  VALUES (p_uuid, p_status, o_outcome, v_at, now(), p_source, p_payload)
  ON CONFLICT (uuid, status) DO NOTHING;
  IF NOT FOUND THEN
    -- Stored by a concurrent request since the first look.
    o_outcome := 'duplicate';
    o_unsettled := EXISTS (
      SELECT 1 FROM message_events b WHERE b.uuid = p_uuid AND b.status = p_status AND b.outcome = 'buffered'
    );
    RETURN;
  END IF;

  IF o_outcome IN ('applied', 'stale') THEN
    UPDATE messages m SET
      status = CASE WHEN o_outcome = 'applied' THEN p_status ELSE m.status END,
      sent_at = CASE WHEN p_status = 'SENT' THEN COALESCE(m.sent_at, v_at) ELSE m.sent_at END,
      delivered_at = CASE WHEN p_status = 'DELIVERED' THEN COALESCE(m.delivered_at, v_at) ELSE m.delivered_at END,
      read_at = CASE WHEN p_status = 'READ' THEN COALESCE(m.read_at, v_at) ELSE m.read_at END,
      failed_at = CASE WHEN p_status = 'FAILED' THEN COALESCE(m.failed_at, v_at) ELSE m.failed_at END,
      expired_at = CASE WHEN p_status = 'EXPIRED' THEN COALESCE(m.expired_at, v_at) ELSE m.expired_at END,
      error_code = CASE WHEN p_status = 'FAILED' AND o_outcome = 'applied' THEN p_error_code ELSE m.error_code END,
      error_message = CASE WHEN p_status = 'FAILED' AND o_outcome = 'applied' THEN p_error_message ELSE m.error_message END,
      wam_id = COALESCE(m.wam_id, p_wam_id),
      updated_at = now()
    WHERE m.uuid = p_uuid;
  END IF;
END
$$;

-- Buffered events are few; only they are looked up by outcome (settling stragglers, retention). A partial index
-- instead of one over every event's (outcome, received_at): one index entry fewer per stored event.
DROP INDEX "message_events_outcome_received_at_idx";
CREATE INDEX "message_events_buffered_received_at_idx" ON "message_events"("received_at") WHERE "outcome" = 'buffered';
