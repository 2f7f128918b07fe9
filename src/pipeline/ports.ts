/** The narrow interfaces at the pipeline's edges: each has a real implementation and is easy to fake in a test. */

/** An image as the pipeline carries it: base64 (what the API sends and the notification needs). */
export interface GeneratedImage {
  /** Base64 without a data-URL prefix. */
  base64: string;
  mimeType: string;
  /** The prompt the model actually used, when the API says. */
  revisedPrompt?: string;
  /** Cost of this image in USD, when the API reports usage. */
  costUsd?: number;
}

/** One request for an image. */
export interface ImageRequest {
  /** The prepared prompt (prefix + the user's cleaned, possibly cut prompt). */
  prompt: string;
  /** The job's user; the Grok provider sends only a one-way hash of it (`user`). */
  userId: string;
  /**
   * Epoch ms after which waiting for capacity (the shared rate limit, a rate-limit 429) ends the job as
   * GENERATION_FAILED (GENERATION_DEADLINE_MS from the start of the generate step). Absent: no deadline.
   */
  deadlineAt?: number;
}

/** Makes one image; one attempt, no retries (the pipeline owns the retry policy). */
export interface ImageProvider {
  generate(request: ImageRequest, signal: AbortSignal): Promise<GeneratedImage>;
}

/**
 * Proves that `token` belongs to `userId`. Resolves when it does; throws a WorkerError
 * (`INVALID_TOKEN`, `SESSION_EXPIRED`, or transient when a verification service is unreachable).
 */
export interface TokenVerifier {
  verify(token: string, userId: string, signal: AbortSignal): Promise<void>;
}

/** What happened to a job, before it is shaped into the wire format. */
export interface JobEvent {
  userId: string;
  number: unknown;
  jobId: string;
  status: 'processing' | 'completed' | 'failed';
  image?: GeneratedImage;
  error?: { code: string; message: string };
}

/** Delivers events to a user. Resolves once delivered; rejects (transient) when it gave up. */
export interface Notifier {
  notify(event: JobEvent, signal: AbortSignal): Promise<void>;
  /**
   * Delivers at once if that needs no waiting (connected, no acknowledgement required) and says whether
   * it did. Lets the pipeline skip the checkpoint when there is nothing to wait for.
   */
  tryDeliver(event: JobEvent): boolean;
  /** Best effort, for progress: sends at once if connected, never waits. Returns whether it was sent. */
  tryNotify(event: JobEvent): boolean;
  /** Resolves true once connected, false after `timeoutMs`: lets a start wait briefly for its first events to go out. */
  waitForConnection?(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** Who a job belongs to: enough to tell them it failed. */
export interface JobOwner {
  userId: string;
  number: string | number | boolean | null;
}

/**
 * Keeps a generated image until it is delivered, so a later attempt of the job does not pay again.
 * `fingerprint` ties the image to one job instance (user and creation time): a reused job id never
 * delivers an earlier job's image. The job's end (the queue side) removes it.
 */
export interface CheckpointStore {
  /** The image an earlier run of this job checkpointed, if any. */
  load(fingerprint: string): Promise<GeneratedImage | null>;
  save(fingerprint: string, image: GeneratedImage): Promise<void>;
}

/**
 * Pictures delivered lately for one ask (the same user, page and prompt), kept REMEMBER_PICTURES_S: a reload
 * mid-story gets the pages it already had without buying them again.
 */
export interface PictureMemory {
  recall(): Promise<GeneratedImage | null>;
  keep(image: GeneratedImage): Promise<void>;
}

/**
 * Prompts refused by moderation, per user, for REFUSAL_MEMORY_S: the StoryBang front end asks again at once
 * after any failure, and a refused prompt would otherwise go back to the paid API every time. Only a hash of
 * user and prompt is stored.
 */
export interface RefusalMemory {
  /** Was this prepared prompt refused for this user within the memory's lifetime? */
  has(userId: string, prompt: string): Promise<boolean>;
  remember(userId: string, prompt: string): Promise<void>;
}

/** The image bytes the process has in memory between an answer and its delivery (capacity/imageMemory.ts). */
export interface ImageBytes {
  /** An image of `bytes` is in memory; the function returned lets it go (once). */
  use(bytes: number): () => void;
}
