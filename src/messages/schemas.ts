import { z } from "zod";
import { normalizePhone } from "../phone/phone.ts";
import { STATUSES } from "../tracking/status.ts";

export const statusSchema = z.enum(STATUSES);

export const phoneNumberSchema = z
  .string()
  .max(64)
  .transform((value, ctx) => {
    const digits = normalizePhone(value);
    if (digits) return digits;
    ctx.addIssue({ code: "custom", message: "must be a valid international phone number (E.164, at most 15 digits)" });
    return z.NEVER;
  })
  .meta({
    description: "International number; `+`, spaces and dashes allowed. Normalised to digits.",
    example: "38761444555",
  });

// Control characters (C0, DEL, C1) except tab, newline and carriage return.
const CONTROL_CHARACTERS = /(?![\t\n\r])\p{Cc}/u;

export const referenceSchema = z
  .string()
  .regex(/^[A-Za-z0-9._:@-]{1,128}$/, "must be 1 to 128 characters of letters, digits and . _ : @ -")
  .meta({ description: "Your own id for the message (a user id, a session id).", example: "signup:4411" });

const METADATA_MAX_KEYS = 20;
const METADATA_MAX_BYTES = 2048;

const PLAIN_TEXT_MESSAGE = "must not contain control characters (other than tab and newline) or invalid Unicode";
const isPlainText = (text: string) => text.isWellFormed() && !CONTROL_CHARACTERS.test(text);

// Metadata is stored as JSONB, which cannot hold NUL or a lone surrogate: refuse them (and other control
// characters) before Betatel is called, not after the OTP is already on its way.
const metadataKeySchema = z.string().refine(isPlainText, PLAIN_TEXT_MESSAGE);
const metadataValueSchema = z.union([z.string().refine(isPlainText, PLAIN_TEXT_MESSAGE), z.number(), z.boolean()]);

const metadataRecordSchema = z
  .record(metadataKeySchema, metadataValueSchema)
  .refine((value) => Object.keys(value).length <= METADATA_MAX_KEYS, `must have at most ${METADATA_MAX_KEYS} keys`)
  .refine(
    (value) => Buffer.byteLength(JSON.stringify(value)) <= METADATA_MAX_BYTES,
    `must be at most ${METADATA_MAX_BYTES} bytes as JSON`,
  )
  .meta({
    description: `Your labels: at most ${METADATA_MAX_KEYS} keys with string, number or boolean values, at most 2 KiB as JSON.`,
    example: { flow: "signup", attempt: 1 },
    maxProperties: METADATA_MAX_KEYS,
  });

// The record parser drops a `__proto__` key without a word (before any key check), so the raw input is
// checked for it: a caller's label must not vanish behind a 201.
export const metadataSchema = z.preprocess((value, ctx) => {
  if (value !== null && typeof value === "object" && Object.hasOwn(value, "__proto__")) {
    ctx.addIssue({ code: "custom", message: "must not have the key __proto__", path: ["__proto__"] });
  }
  return value;
}, metadataRecordSchema);

export const sendMessageBodySchema = z
  .strictObject({
    to: phoneNumberSchema,
    text: z
      .string()
      .refine((text) => {
        const length = [...text].length;
        return length >= 1 && length <= 4096;
      }, "must be 1 to 4096 characters")
      // A WhatsApp text cannot carry NUL or terminal control codes, and a lone surrogate is not text at all:
      // refuse them here rather than let Betatel or the phone garble the code. Tab and newlines are fine.
      .refine(isPlainText, PLAIN_TEXT_MESSAGE)
      .meta({
        // JSON Schema counts code points, as the refinement above does.
        minLength: 1,
        maxLength: 4096,
        description: "The OTP message. Never stored in clear and never logged.",
        example: "Your code is 482910",
      }),
    reference: referenceSchema.optional(),
    metadata: metadataSchema.optional(),
  })
  .meta({ id: "SendMessageRequest" });
export type SendMessageBody = z.output<typeof sendMessageBodySchema>;

export const idempotencyKeySchema = z.string().min(1).max(255);

export const messageUuidSchema = z
  .string()
  .regex(/^[A-Za-z0-9._:-]{1,255}$/, "must be a message uuid")
  .meta({ example: "01JV5V54KPYK9GB29265EQRZ2P" });

const timestamp = z.iso.datetime({ offset: true });
const nullableTimestamp = timestamp.nullable();

const watchUrlSchema = z.string().meta({
  description:
    "The message's event stream with a `watch` token that reads this one message only (stream and long-poll) for 15 minutes, so a browser page can follow it without an API key. Relative to the service unless PUBLIC_URL is set.",
  example: "/v1/messages/01JV5V54KPYK9GB29265EQRZ2P/stream?watch=1a2b3c4d.Q2hhbmdlTWVQbGVhc2VYWVo0",
});

export const createdMessageSchema = z
  .object({
    uuid: z.string(),
    to: z.string(),
    status: z.literal("PENDING"),
    createdAt: timestamp,
    watchUrl: watchUrlSchema,
  })
  .meta({ id: "CreatedMessage" });

export const eventSchema = z
  .object({
    status: statusSchema,
    outcome: z.enum(["applied", "stale", "rejected", "buffered"]),
    occurredAt: timestamp,
    receivedAt: timestamp,
    source: z.string(),
  })
  .meta({ id: "MessageEvent" });

export const messageSummarySchema = z
  .object({
    uuid: z.string(),
    to: z.string(),
    status: statusSchema,
    createdAt: timestamp,
    updatedAt: timestamp,
    sentAt: nullableTimestamp,
    deliveredAt: nullableTimestamp,
    readAt: nullableTimestamp,
    failedAt: nullableTimestamp,
    expiredAt: nullableTimestamp,
    error: z.object({ code: z.string().nullable(), message: z.string().nullable() }).nullable(),
    reference: z.string().nullable(),
    metadata: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).nullable(),
    verificationId: z.string().nullable().meta({ description: "The verification that sent it, if any." }),
  })
  .meta({ id: "MessageSummary" });

export const messageSchema = messageSummarySchema
  .extend({
    events: z.array(eventSchema),
    watchUrl: watchUrlSchema.optional().meta({
      description:
        "On answers to an API key (GET and its long-poll): a fresh watchUrl. Absent from stream events and from answers to a watch token.",
    }),
  })
  .meta({ id: "Message" });

export type MessageSummary = z.output<typeof messageSummarySchema>;
export type MessageView = z.output<typeof messageSchema>;
export type EventView = z.output<typeof eventSchema>;
