import { errorSummary, WorkerError } from '../base/errors';
import type { Logger } from '../base/logger';
import { validateJobData } from '../pipeline/steps/jobData';
import type { TokenVerifier } from '../pipeline/ports';
import type { FairQueue } from './fairQueue';
import type { Intake } from './replies';

/** Tokens verified at once while a batch is vetted (a verification service is asked one request per token). */
const AT_ONCE = 8;

/**
 * Vets the jobs the intake put into users' lines: a job whose data or token fails the worker's rules needs no image
 * request, so it leaves its line for the answers and is answered at once, even while the fleet waits for the pace
 * (a 429's Retry-After, a long backlog). Its run checks everything again; vetting only decides where it waits. A
 * verification that cannot be done now (the service is away) leaves the job where it is.
 */
export function jobVetting(fair: FairQueue, verifier: TokenVerifier, logger: Logger): (jobs: Intake['jobs']) => Promise<void> {
  return async (jobs) => {
    const failing: string[] = [];
    for (let i = 0; i < jobs.length; i += AT_ONCE) {
      const batch = jobs.slice(i, i + AT_ONCE);
      const verdicts = await Promise.all(batch.map(({ data }) => fails(data, verifier)));
      batch.forEach(({ fid }, j) => verdicts[j] && failing.push(fid));
    }
    try {
      await fair.expedite(failing);
    } catch (err) {
      logger.warn(
        { component: 'intake', err: errorSummary(err) },
        'jobs that need no image request not moved ahead: Redis failed; they are answered in their turn',
      );
    }
  };
}

/** Whether the job will fail whatever the image API does: its data, or its token, is refused for good. */
async function fails(data: string, verifier: TokenVerifier): Promise<boolean> {
  try {
    const job = validateJobData(JSON.parse(data));
    await verifier.verify(job.token, job.userId, AbortSignal.timeout(30_000));
    return false;
  } catch (err) {
    return err instanceof WorkerError ? !err.transient : err instanceof SyntaxError;
  }
}
