import { USER_MESSAGES } from '../../src/base/errors';
import { isFinal, isImage, signToken, waitUntil } from '../support/helpers';
import { TestSystem, useTestSystem, WaitPage } from '../support/harness';

/**
 * What StoryBang's wait page does to a worker: it asks for every page of a story at once, asks again at once
 * whenever an answer says `Status: false`, and asks for every page again after a reload. The worker must not
 * feed those loops, must not pay twice for a page still on its way, and must keep Bull's word to producers.
 */
describe('StoryBang at its real habits', () => {
  let sys: TestSystem;
  useTestSystem('storybang', (s) => (sys = s));

  const ends = (): Array<Record<string, unknown>> => sys.ends();

  it('a blank prompt asked again at once is answered at once the first time, then held 2 s, then 4 s, and no held answer is lost to a restart', async () => {
    const browser = await sys.user('alice');
    const first = await sys.startWorker({ STALLED_INTERVAL_MS: '200' });
    const page = new WaitPage(sys, browser, 'alice', { Prompt: '   ', Number: 4 });
    await page.ask();
    await waitUntil(() => sys.events('job:heldBack').length > 0, 10_000, 'the repeat held back');
    // Held where no worker's timer can bring it back before this one is gone.
    const held = `bull:${sys.queueName}:fq:held`;
    const holdAll = async (due: number): Promise<void> => {
      for (const fid of await sys.redis.zrange(held, 0, -1)) await sys.redis.zadd(held, due, fid);
    };
    await holdAll(Date.now() + 3_600_000);
    expect(page.answers).toHaveLength(1);
    // The repeat held back has no job end line yet: it ends when its answer is told.
    expect(ends().map((e) => [e.outcome, e.heldMs])).toEqual([['failed', undefined]]);
    expect(sys.events('job:heldBack').map((e) => e.heldMs)).toEqual([2000]);
    // The worker that held the answer stops; the answer waits in Redis for the next one. It was due 2 s after it
    // was held: the test makes it due now rather than wait.
    await first.close();
    await holdAll(0);
    await sys.startWorker({ STALLED_INTERVAL_MS: '200' });
    await waitUntil(() => page.answers.length === 2, 15_000, 'the held answer, from the next worker');
    // The second answer is asked again at once too: held twice as long.
    await waitUntil(() => sys.events('job:heldBack').length === 2, 5000, 'the next repeat held back');
    page.stop();
    expect(page.answers.every((a) => a.Status === false && a.Message === USER_MESSAGES.INVALID_JOB)).toBe(true);
    expect(sys.events('job:heldBack').map((e) => e.heldMs)).toEqual([2000, 4000]);
    // One job end line per job: the held answer's says how long it was held back, at warn.
    await waitUntil(() => ends().length === 2, 5000, 'the held answer ended');
    expect(ends().map((e) => [e.outcome, e.heldMs, e.level])).toEqual([
      ['failed', undefined, 'warn'],
      ['failed', 2000, 'warn'],
    ]);
    expect(sys.xai.calls).toHaveLength(0);
  });

  it('an expired session asked again with a fresh token passes at once', async () => {
    const browser = await sys.user('alice');
    await sys.startWorker();
    await sys.enqueue({ Id: 'alice', Prompt: 'a fox', Token: signToken('alice', { expiresInS: -10 }), Number: 1 });
    await browser.waitFor((p) => p.Status === false);
    await sys.enqueue({ Id: 'alice', Prompt: 'a fox', Token: signToken('alice'), Number: 1 });
    expect(isImage(await browser.waitFor((p) => p.Status === true))).toBe(true);
    // The job's end is recorded (and logged) just after the picture is sent.
    await waitUntil(() => ends().length === 2, 5000, 'both job ends');
    expect(ends().map((e) => e.outcome)).toEqual(['failed', 'completed']);
  });

  it('an expired ask and a fresh ask for the same page, taken in together: the fresh one gets the picture', async () => {
    const browser = await sys.user('alice');
    // Both wait in Bull before the worker starts: the fresh ask joins the expired one.
    await sys.enqueue({ Id: 'alice', Prompt: 'a fox', Token: signToken('alice', { expiresInS: -10 }), Number: 1 });
    await sys.enqueue({ Id: 'alice', Prompt: 'a fox', Token: signToken('alice'), Number: 1 });
    await sys.startWorker();
    expect(isImage(await browser.waitFor((p) => p.Status === true))).toBe(true);
    await waitUntil(() => ends().length === 2, 5000, 'both job ends');
    expect(ends().map((e) => [e.outcome, e.code])).toEqual([
      ['failed', 'SESSION_EXPIRED'],
      ['completed', null],
    ]);
    expect(sys.xai.calls).toHaveLength(1);
  });

  it('a reload mid-story: pages still waiting or running join them, one API call and one delivery each', async () => {
    // The first page is drawn until the reload's asks are in, so they come while it runs and the others wait.
    const release = sys.xai.stall();
    const before = await sys.user('alice');
    await sys.startWorker({ CONCURRENCY: '1' });
    const pages = [1, 2, 3].map((n) => ({ Id: 'alice', Prompt: `page ${n}`, Number: n }));
    const firstAsks = await Promise.all(pages.map((p) => sys.enqueue({ ...p, Token: signToken('alice') }, { removeOnComplete: false })));
    await waitUntil(() => sys.xai.calls.length === 1, 15_000, 'first page being drawn');
    // The reload: the old page is gone, the new one joins the room once and asks for every page again.
    before.close();
    const after = await sys.user('alice');
    const secondAsks = await Promise.all(pages.map((p) => sys.enqueue({ ...p, Token: signToken('alice') }, { removeOnComplete: false })));
    const joined = async (): Promise<number> => Number(await sys.redis.hget(`bull:${sys.queueName}:fq:stats`, 'joined'));
    await waitUntil(async () => (await joined()) === 3, 10_000, 'every second ask joined its page');
    release();
    await waitUntil(() => after.finals().length === 3, 15_000, 'every page on the new page');
    // One at a time: Bull's finished() adds listeners to its event connection until that connection is ready.
    const finished: unknown[] = [];
    for (const job of [...firstAsks, ...secondAsks]) finished.push(await job.finished());
    expect(finished.every((r) => (r as { delivered?: boolean }).delivered === true)).toBe(true);
    expect(sys.xai.calls).toHaveLength(3);
    expect(
      after
        .finals()
        .map((p) => p.Number)
        .sort(),
    ).toEqual([1, 2, 3]);
    expect(after.finals().every(isImage)).toBe(true);
    expect(await sys.producer.getJobCounts()).toMatchObject({ waiting: 0, active: 0, completed: 6 });
  });

  it('a reload after 3 of 6 pages, pictures remembered: 6 API calls in all, every page on the new page once', async () => {
    const pages = [1, 2, 3, 4, 5, 6].map((n) => ({ Id: 'alice', Prompt: `page ${n}`, Number: n }));
    const before = await sys.user('alice');
    await sys.startWorker({ REMEMBER_PICTURES_S: '600' });
    for (const page of pages.slice(0, 3)) await sys.enqueue({ ...page, Token: signToken('alice') });
    await waitUntil(() => before.finals().length === 3, 10_000, 'three pages delivered');
    // The reload: a new page joins the room once and asks for all six again.
    before.close();
    const after = await sys.user('alice');
    for (const page of pages) await sys.enqueue({ ...page, Token: signToken('alice') });
    await waitUntil(() => after.finals().length === 6, 10_000, 'all six on the new page');
    expect(after.finals().every(isImage)).toBe(true);
    expect(new Set(after.finals().map((p) => p.Number)).size).toBe(6);
    expect(sys.xai.calls).toHaveLength(6);
    await waitUntil(() => ends().length === 9, 5000, 'every job ended');
    expect(ends().filter((e) => e.remembered === true)).toHaveLength(3);
  });

  it('Bull tells the truth: finished() resolves after the picture is delivered, rejects with the code of a failure told, and the counts agree', async () => {
    const browser = await sys.user('alice');
    await sys.startWorker();
    const kept = { removeOnComplete: false, removeOnFail: false };
    const good = await sys.enqueue({ Id: 'alice', Prompt: 'a fox', Token: signToken('alice'), Number: 1 }, kept);
    const expired = await sys.enqueue({ Id: 'alice', Prompt: 'a hen', Token: signToken('alice', { expiresInS: -10 }), Number: 2 }, kept);
    const result = await good.finished();
    // Resolved once the picture was sent to the notification service (which does not acknowledge): it is on its
    // way there, or there already.
    const pictureSent = (): boolean =>
      sys.relay.received.some((p) => (p as Record<string, unknown>).Number === 1 && (p as Record<string, unknown>).Status === true);
    await waitUntil(pictureSent, 10_000, 'the picture at the notification service');
    expect(result).toEqual({ delivered: true, fromCheckpoint: false, imageBytes: expect.any(Number) });
    await expect(expired.finished()).rejects.toThrow('SESSION_EXPIRED');
    await browser.waitFor((p) => p.Number === 2 && isFinal(p));
    expect(await sys.producer.getJobCounts()).toMatchObject({ waiting: 0, active: 0, completed: 1, failed: 1 });
    expect((await sys.producer.getJob(expired.id))?.failedReason).toBe('SESSION_EXPIRED');
  });
});

describe('Bull tells the truth, with a notification service that acknowledges', () => {
  let sys: TestSystem;
  useTestSystem('acked', (s) => (sys = s), 'each', { relay: { acknowledge: true } });

  it('finished() resolves only after the notification service has the picture', async () => {
    await sys.user('alice');
    await sys.startWorker({ NOTIFY_ACK_TIMEOUT_MS: '5000' });
    // Kept once completed: a job removed before finished() has subscribed would leave it waiting for ever (Bull).
    const job = await sys.enqueue({ Id: 'alice', Prompt: 'a fox', Token: signToken('alice'), Number: 1 }, { removeOnComplete: false });
    await job.finished();
    expect(sys.relay.received.some((p) => (p as Record<string, unknown>).Number === 1 && (p as Record<string, unknown>).Status === true)).toBe(true);
  });
});
