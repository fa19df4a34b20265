// Waiting in the suites: a pause, and polling until a condition holds.

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `condition` every `intervalMs` until it holds; throws naming `what` after `timeoutMs`. */
export async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs = 30_000, intervalMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(intervalMs);
  }
}
