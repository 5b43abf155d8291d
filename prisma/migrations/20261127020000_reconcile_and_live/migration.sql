-- Reconciler bookkeeping on each message: how often Betatel's WDR was asked, when last, and when the message
-- may be checked next. `next_check_at` is also the claim: a reconciler sets it into the future when it takes
-- a message, so no other instance checks that message before then.
ALTER TABLE "messages" ADD COLUMN "check_count" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "messages" ADD COLUMN "last_checked_at" TIMESTAMPTZ(3);
ALTER TABLE "messages" ADD COLUMN "next_check_at" TIMESTAMPTZ(3);

-- The reconciler's and expiry's question: unresolved messages by age. Partial, so it stays small.
CREATE INDEX "messages_unresolved_created_at_idx" ON "messages"("created_at") WHERE "status" IN ('PENDING', 'SENT');

-- Live status: every status change is announced on channel `message_changed` (payload: the uuid) by the
-- statement that made it, so it is delivered on commit to every service instance that LISTENs, and never
-- for a change that rolled back. Only status changes: NOTIFY serialises commits, keep it rare.
CREATE FUNCTION "notify_message_changed"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('message_changed', NEW."uuid");
  RETURN NULL;
END
$$;

CREATE TRIGGER "messages_notify_changed"
  AFTER UPDATE OF "status" ON "messages"
  FOR EACH ROW WHEN (OLD."status" IS DISTINCT FROM NEW."status")
  EXECUTE FUNCTION "notify_message_changed"();
