import { linkSignals, withDeadline } from '../../src/base/abort';

describe('withDeadline', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('aborts exactly when timeoutMs has passed, and says it was the deadline', () => {
    const request = withDeadline(new AbortController().signal, 300);
    jest.advanceTimersByTime(299);
    expect(request.signal.aborted).toBe(false);
    expect(request.timedOut()).toBe(false);
    jest.advanceTimersByTime(1);
    expect(request.signal.aborted).toBe(true);
    expect(request.timedOut()).toBe(true);
    request.dispose();
  });

  it("follows the caller's abort at once, which is not a timeout", () => {
    const caller = new AbortController();
    const request = withDeadline(caller.signal, 300);
    caller.abort(new Error('shutdown'));
    expect(request.signal.aborted).toBe(true);
    expect(request.signal.reason).toEqual(new Error('shutdown'));
    expect(request.timedOut()).toBe(false);
    request.dispose();
  });

  it('never fires once disposed', () => {
    const request = withDeadline(new AbortController().signal, 300);
    request.dispose();
    jest.advanceTimersByTime(1000);
    expect(request.signal.aborted).toBe(false);
    expect(jest.getTimerCount()).toBe(0);
  });
});

describe('linkSignals', () => {
  it('is aborted already when a source was, with its reason', () => {
    const source = new AbortController();
    source.abort('gone');
    const linked = linkSignals(new AbortController().signal, source.signal);
    expect(linked.signal.aborted).toBe(true);
    expect(linked.signal.reason).toBe('gone');
    linked.dispose();
  });

  it('stops following its sources once disposed', () => {
    const source = new AbortController();
    const linked = linkSignals(source.signal);
    linked.dispose();
    source.abort();
    expect(linked.signal.aborted).toBe(false);
  });
});
