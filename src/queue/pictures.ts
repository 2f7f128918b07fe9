import path from 'node:path';
import { defineScripts, loadScripts, RedisClient, ScriptCommand } from '../redis/scripts';
import type { GeneratedImage, PictureMemory } from '../pipeline/ports';
import { encodeCheckpoint, parseCheckpoint } from './checkpoints';
import type { QueueKeys } from './keys';

const SCRIPTS = loadScripts(path.join(__dirname, 'commands'));

/**
 * Pictures delivered lately, by ask (user, page and prompt: `sha1(Id, Number, Prompt)`, as the intake names it),
 * kept REMEMBER_PICTURES_S within REMEMBER_PICTURES_MB of Redis (commands/remember-3.lua): a reload mid-story asks
 * for every page again, and the pages it already had come back without being bought again. An ask that has one
 * goes to the answers when it is taken in, so it never waits for the pace. Its token is verified all the same.
 */
export class Pictures {
  private readonly remember: ScriptCommand;

  constructor(
    private readonly client: RedisClient,
    private readonly keys: QueueKeys,
    private readonly ttlS: number,
    private readonly maxMb: number,
  ) {
    this.remember = defineScripts(client, SCRIPTS, 'pictures', ['remember']).remember;
  }

  /** What one run of the ask `ask` sees. */
  forAsk(ask: string): PictureMemory {
    const key = this.keys.picture(ask);
    const fingerprint = `ask:${ask}`;
    return {
      recall: async () => parseCheckpoint(await this.client.getBuffer(key), fingerprint),
      keep: async (image: GeneratedImage) => {
        const value = encodeCheckpoint(fingerprint, { ...image, costUsd: undefined });
        await this.remember(key, this.keys.pictures, this.keys.pictureBytes, this.keys.prefix, ask, this.ttlS * 1000, this.maxMb * 1024 * 1024, value);
      },
    };
  }
}
