import { z } from "zod";
import { metadataSchema, phoneNumberSchema, referenceSchema } from "../messages/schemas.ts";
import { VERIFICATION_STATUSES } from "./repository.ts";

export const verificationIdSchema = z
  .string()
  .regex(/^ver_[0-9A-Z]{26}$/, "is not a verification id")
  .meta({ example: "ver_01JV5V54KPYK9GB29265EQRZ2P" });

export const startVerificationBodySchema = z
  .strictObject({ to: phoneNumberSchema, reference: referenceSchema.optional(), metadata: metadataSchema.optional() })
  .meta({ id: "StartVerificationRequest" });

/** A code as a person types it: digits, with spaces or dashes tolerated. Anything else is a wrong code. */
const codeSchema = z
  .string()
  .max(32, "is too long")
  .transform((code) => code.replace(/[\s-]/g, ""))
  // Nothing typed, or not digits: a mistake of the form, not a guess, so it does not use up a check.
  .refine((code) => /^[0-9]{1,32}$/.test(code), "must be the code's digits (spaces and dashes are ignored)")
  .meta({ description: "The code the person received.", example: "482910" });

export const checkBodySchema = z.strictObject({ code: codeSchema }).meta({ id: "CheckVerificationRequest" });
export const checkByNumberBodySchema = z
  .strictObject({ to: phoneNumberSchema, code: codeSchema })
  .meta({ id: "CheckVerificationByNumberRequest" });

const timestamp = z.iso.datetime({ offset: true });

export const verificationSchema = z
  .object({
    id: z.string(),
    to: z.string(),
    status: z.enum(VERIFICATION_STATUSES),
    expiresAt: timestamp,
    checksLeft: z.int().meta({ description: "Wrong codes still allowed before it ends as max_attempts_reached." }),
    sendsLeft: z.int().meta({ description: "Sends (the first included) still allowed." }),
    reference: z.string().nullable(),
    metadata: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).nullable(),
    createdAt: timestamp,
    approvedAt: timestamp.nullable(),
    messages: z
      .array(z.object({ uuid: z.string(), status: z.string(), createdAt: timestamp }))
      .meta({ description: "The messages sent for it, oldest first, with their current delivery status." }),
  })
  .meta({ id: "Verification" });

export type VerificationView = z.output<typeof verificationSchema>;
