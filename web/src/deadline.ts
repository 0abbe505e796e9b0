/**
 * A bound on a wait that could otherwise last for good (a browser's GPU
 * process or a worker that never answers).
 * @module
 */

/** What {@link withinTime} resolves to when the time ran out. */
export const TIMED_OUT = Symbol('timed out');

/** `promise`'s value, or {@link TIMED_OUT} if it has not settled within `ms` (its rejection passes through). */
export async function withinTime<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(() => resolve(TIMED_OUT), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
