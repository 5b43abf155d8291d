-- Reconciler bookkeeping on each message: how often Betatel's WDR was asked, when last, and when the message
-- may be checked next. `next_check_at` is also the claim: a reconciler sets it into the future when it takes
-- a message, so no other instance checks that message before then.
ALTER TABLE "messages" ADD COLUMN "check_count" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "messages" ADD COLUMN "last_checked_at" TIMESTAMPTZ(3);
ALTER TABLE "messages" ADD COLUMN "next_check_at" TIMESTAMPTZ(3);

-- The reconciler's and expiry's question: unresolved messages by age. Partial, so it stays small.
CREATE INDEX "messages_unresolved_created_at_idx" ON "messages"("created_at") WHERE "status" IN ('PENDING', 'SENT');
