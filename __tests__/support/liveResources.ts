/**
 * What is open right now. The tests' workers, notifiers and systems register here while they live, so the
 * test suite can fail a test that leaves one running (leakCheck.ts). The worker itself knows nothing of it;
 * the harness tracks a worker from its start to its `worker:stopped` event.
 */
export type ResourceKind = 'worker' | 'notifier' | 'test system';

const open = new Map<number, string>();
const closeListeners = new Set<() => void>();
let nextId = 0;

/** Records `name` as open until the returned function is called (calling it again does nothing). */
export function track(kind: ResourceKind, name: string): () => void {
  const id = nextId++;
  open.set(id, `${kind} ${name}`);
  return () => {
    if (open.delete(id)) closeListeners.forEach((listener) => listener());
  };
}

/** "kind name" of everything tracked and not yet closed, oldest first. */
export function openResources(): string[] {
  return [...open.values()];
}

/** Calls `listener` whenever something closes, until the returned function is called. */
export function onClose(listener: () => void): () => void {
  closeListeners.add(listener);
  return () => void closeListeners.delete(listener);
}
