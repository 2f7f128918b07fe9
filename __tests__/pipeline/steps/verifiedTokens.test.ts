import jwt from 'jsonwebtoken';
import { abortError, permanentError, transientError } from '../../../src/base/errors';
import { rememberVerified } from '../../../src/pipeline/steps/verifiedTokens';
import type { TokenVerifier } from '../../../src/pipeline/ports';

/** A verification service stand-in: counts its questions, answers as told. */
function service(answer: () => Promise<void> = async () => undefined): TokenVerifier & { asked: number } {
  const s = {
    asked: 0,
    verify: async (_token: string, _userId: string, signal: AbortSignal) => {
      s.asked += 1;
      signal.throwIfAborted();
      return answer();
    },
  };
  return s;
}

const token = jwt.sign({ Id: 'alice', exp: Math.floor(Date.now() / 1000) + 3600 }, 'k');
const signal = (): AbortSignal => new AbortController().signal;

describe('rememberVerified', () => {
  it('asks the service once for a token checked twice (vetting, then the run)', async () => {
    const s = service();
    const verifier = rememberVerified(s);
    await verifier.verify(token, 'alice', signal());
    await verifier.verify(token, 'alice', signal());
    expect(s.asked).toBe(1);
  });

  it('remembers a refusal for good, and asks again after the service was away', async () => {
    const refused = service(async () => Promise.reject(permanentError('INVALID_TOKEN', 'refused')));
    const verifier = rememberVerified(refused);
    await expect(verifier.verify(token, 'bob', signal())).rejects.toMatchObject({ code: 'INVALID_TOKEN' });
    await expect(verifier.verify(token, 'bob', signal())).rejects.toMatchObject({ code: 'INVALID_TOKEN' });
    expect(refused.asked).toBe(1);

    const away = service(async () => Promise.reject(transientError('unreachable')));
    const again = rememberVerified(away);
    await expect(again.verify(token, 'alice', signal())).rejects.toMatchObject({ transient: true });
    await expect(again.verify(token, 'alice', signal())).rejects.toMatchObject({ transient: true });
    expect(away.asked).toBe(2);
  });

  it("a caller that gives up stops its own wait only: another caller's shared verification goes on", async () => {
    let finish!: () => void;
    const slow = service(() => new Promise<void>((resolve) => (finish = resolve)));
    const verifier = rememberVerified(slow);
    const first = new AbortController();
    const a = verifier.verify(token, 'alice', first.signal).then(
      () => 'ok',
      (e: Error) => e.name,
    );
    const b = verifier.verify(token, 'alice', signal()).then(
      () => 'ok',
      (e: Error) => e.name,
    );
    first.abort(abortError());
    finish();
    expect(await a).toBe('AbortError');
    expect(await b).toBe('ok');
    expect(slow.asked).toBe(1);
  });
});
