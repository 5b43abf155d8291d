-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateEnum
CREATE TYPE "message_status" AS ENUM ('PENDING', 'SENT', 'DELIVERED', 'READ', 'FAILED', 'EXPIRED');

-- CreateTable
CREATE TABLE "messages" (
    "uuid" TEXT NOT NULL,
    "to" TEXT NOT NULL,
    "status" "message_status" NOT NULL DEFAULT 'PENDING',
    "text_length" INTEGER NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "sent_at" TIMESTAMPTZ(3),
    "delivered_at" TIMESTAMPTZ(3),
    "read_at" TIMESTAMPTZ(3),
    "failed_at" TIMESTAMPTZ(3),
    "expired_at" TIMESTAMPTZ(3),
    "error_code" TEXT,
    "error_message" TEXT,
    "wam_id" TEXT,

    CONSTRAINT "messages_pkey" PRIMARY KEY ("uuid")
);

-- CreateTable
CREATE TABLE "message_events" (
    "id" BIGSERIAL NOT NULL,
    "uuid" TEXT NOT NULL,
    "status" "message_status" NOT NULL,
    "outcome" TEXT NOT NULL,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL,
    "received_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "source" TEXT NOT NULL,
    "payload" JSONB,

    CONSTRAINT "message_events_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "idempotency_keys" (
    "scope" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "request_hash" TEXT NOT NULL,
    "response_status" INTEGER,
    "response_body" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "idempotency_keys_pkey" PRIMARY KEY ("scope","key")
);

-- CreateIndex
CREATE INDEX "messages_created_at_uuid_idx" ON "messages"("created_at" DESC, "uuid" DESC);

-- CreateIndex
CREATE INDEX "messages_status_created_at_uuid_idx" ON "messages"("status", "created_at" DESC, "uuid" DESC);

-- CreateIndex
CREATE INDEX "messages_to_created_at_uuid_idx" ON "messages"("to", "created_at" DESC, "uuid" DESC);

-- CreateIndex
CREATE INDEX "message_events_outcome_received_at_idx" ON "message_events"("outcome", "received_at");

-- CreateIndex
CREATE INDEX "message_events_received_at_idx" ON "message_events"("received_at");

-- CreateIndex
CREATE UNIQUE INDEX "message_events_uuid_status_key" ON "message_events"("uuid", "status");

-- CreateIndex
CREATE INDEX "idempotency_keys_created_at_idx" ON "idempotency_keys"("created_at");

