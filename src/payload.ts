import type { NotifyFormat } from './config';
import { SESSION_EXPIRED_MESSAGE } from './tokenVerifier';
import type { JobEvent } from './types';

/** The default wire format: the seed's response schema plus routing. */
export interface SchemaPayload {
  Id: string;
  Number: unknown;
  jobId: string;
  status: JobEvent['status'];
  success: boolean;
  data: { image: string; mimeType: string } | null;
  error: string | null;
  code: string | null;
}

/** What the existing front end reads. */
export interface LegacyPayload {
  Id: string;
  Status: boolean;
  Message: string;
  Number: unknown;
}

export function roomFor(userId: string, suffix: string): string {
  return userId + suffix;
}

export function schemaPayload(event: JobEvent, room: string): SchemaPayload {
  const completed = event.status === 'completed' && event.image !== undefined;
  return {
    Id: room,
    Number: event.number ?? null,
    jobId: event.jobId,
    status: event.status,
    success: completed,
    data: completed ? { image: event.image!.base64, mimeType: event.image!.mimeType } : null,
    error: event.error?.message ?? null,
    code: event.error?.code ?? null,
  };
}

export function legacyPayload(event: JobEvent, room: string): LegacyPayload {
  const completed = event.status === 'completed' && event.image !== undefined;
  let message: string;
  if (completed) message = `data:${event.image!.mimeType};base64,${event.image!.base64}`;
  else if (event.error?.code === 'SESSION_EXPIRED') message = SESSION_EXPIRED_MESSAGE;
  else message = event.error?.message ?? 'Image generation failed';
  return { Id: room, Status: completed, Message: message, Number: event.number ?? null };
}

/** The payload to emit for `event`, or null when the format has no such event (legacy has no progress). */
export function buildPayload(format: NotifyFormat, event: JobEvent, roomSuffix: string): SchemaPayload | LegacyPayload | null {
  const room = roomFor(event.userId, roomSuffix);
  if (format === 'legacy') return event.status === 'processing' ? null : legacyPayload(event, room);
  return schemaPayload(event, room);
}
