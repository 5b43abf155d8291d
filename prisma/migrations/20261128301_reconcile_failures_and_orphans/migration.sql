-- Failed WDR checks of a message (an unreadable or 5xx record): they space out its next check like real
-- checks do, without counting as one (`check_count` counts records actually read).
ALTER TABLE "messages" ADD COLUMN "check_failures" INTEGER NOT NULL DEFAULT 0;

-- A message adopted from Betatel's delivery record (statuses arrived for a uuid we never stored): the OTP's
-- length is not known, so it is NULL there.
ALTER TABLE "messages" ALTER COLUMN "text_length" DROP NOT NULL;

-- Uuids with buffered statuses that Betatel's WDR was asked about (orphan adoption): when, and when they may
-- be asked about again. A row goes when its uuid is adopted or has no buffered status left.
CREATE TABLE "orphan_checks" (
    "uuid" TEXT NOT NULL,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "last_checked_at" TIMESTAMPTZ(3),
    "next_check_at" TIMESTAMPTZ(3) NOT NULL,
    CONSTRAINT "orphan_checks_pkey" PRIMARY KEY ("uuid")
);
