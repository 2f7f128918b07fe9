import type { NotifyFormat } from '../../config';
import { userMessage } from '../../base/errors';
import type { JobEvent } from '../ports';

/** NOTIFY_FORMAT=schema: the seed's response schema plus routing, for relays that pass the whole payload on. */
export interface SchemaPayload {
  Id: string;
  Number: unknown;
  jobId: string;
  status: JobEvent['status'];
  success: boolean;
  data: { image: string; mimeType: string } | null;
  /** One of USER_MESSAGES, or null. */
  error: string | null;
  code: string | null;
}

/**
 * NOTIFY_FORMAT=legacy (the default): what the StoryBang front end reads, and the only fields its
 * notification service relays. `Number` is left out when the job had none.
 */
export interface LegacyPayload {
  Id: string;
  Status: boolean;
  /** `data:<mime>;base64,<image>` on success, else one of USER_MESSAGES. */
  Message: string;
  Number?: string | number | boolean;
}

function roomFor(userId: string, suffix: string): string {
  return userId + suffix;
}

function completedImage(event: JobEvent): JobEvent['image'] {
  return event.status === 'completed' ? event.image : undefined;
}

/** A failure's words come from its code alone: whatever text the event carries is never shown. */
function humanText(event: JobEvent): string | null {
  return event.status === 'failed' || event.error ? userMessage(event.error?.code) : null;
}

export function schemaPayload(event: JobEvent, room: string): SchemaPayload {
  const image = completedImage(event);
  return {
    Id: room,
    Number: event.number ?? null,
    jobId: event.jobId,
    status: event.status,
    success: image !== undefined,
    data: image ? { image: image.base64, mimeType: image.mimeType } : null,
    error: image ? null : humanText(event),
    code: image ? null : (event.error?.code ?? (event.status === 'failed' ? 'GENERATION_FAILED' : null)),
  };
}

export function legacyPayload(event: JobEvent, room: string): LegacyPayload {
  const image = completedImage(event);
  const payload: LegacyPayload = {
    Id: room,
    Status: image !== undefined,
    Message: image ? `data:${image.mimeType};base64,${image.base64}` : userMessage(event.error?.code),
  };
  if (event.number !== null && event.number !== undefined) payload.Number = event.number as LegacyPayload['Number'];
  return payload;
}

/** The payload to emit for `event`, or null when the format has no such event (legacy has no progress). */
export function buildPayload(format: NotifyFormat, event: JobEvent, roomSuffix: string): SchemaPayload | LegacyPayload | null {
  const room = roomFor(event.userId, roomSuffix);
  if (format === 'legacy') return event.status === 'processing' ? null : legacyPayload(event, room);
  return schemaPayload(event, room);
}
