// Terminal progress for the long steps: one line that is rewritten in place (a spinner, the
// step, its detail and the elapsed time) on a terminal; throttled plain lines otherwise (CI logs).

const SPIN = ["|", "/", "-", "\\"];

export interface Progress {
  /** starts a step; the previous one, if any, is closed first */
  step: (label: string) => void;
  /** the current step's detail ("program 3/20, 1,234 leaves") */
  update: (detail: string) => void;
  /** closes the step with a result line */
  done: (summary?: string) => void;
  /** a plain message line */
  log: (msg: string) => void;
  /** stops the ticker */
  close: () => void;
}

export function createProgress(opts: { quiet?: boolean; stream?: NodeJS.WriteStream } = {}): Progress {
  const out = opts.stream ?? process.stdout;
  const tty = Boolean(out.isTTY) && !opts.quiet;
  const t0 = performance.now();
  let label = "";
  let detail = "";
  let stepStart = 0;
  let tick = 0;
  let lastPlain = 0;
  let timer: NodeJS.Timeout | undefined;

  const clock = (ms: number) => {
    const s = Math.floor(ms / 1000);
    return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
  };
  const prefix = () => `[bench ${clock(performance.now() - t0)}]`;
  const render = () => {
    if (!label || opts.quiet) return;
    const elapsed = ((performance.now() - stepStart) / 1000).toFixed(0);
    const line = `${prefix()} ${SPIN[tick++ % SPIN.length]} ${label}${detail ? `: ${detail}` : ""} (${elapsed} s)`;
    if (tty) {
      const width = (out.columns ?? 120) - 1;
      out.write(`\r${line.slice(0, width).padEnd(Math.min(width, line.length + 2))}`);
    } else if (performance.now() - lastPlain > 10_000) {
      lastPlain = performance.now();
      out.write(`${line}\n`);
    }
  };
  const clearLine = () => {
    if (tty) out.write(`\r${" ".repeat((out.columns ?? 120) - 1)}\r`);
  };

  return {
    step(l: string) {
      if (label) this.done();
      label = l;
      detail = "";
      stepStart = performance.now();
      lastPlain = 0;
      if (!timer && !opts.quiet) {
        timer = setInterval(render, tty ? 250 : 1000);
        timer.unref();
      }
      render();
    },
    update(d: string) {
      detail = d;
      if (!tty) return; // plain mode prints on its own schedule
      render();
    },
    done(summary?: string) {
      if (!label) return;
      const secs = (performance.now() - stepStart) / 1000;
      clearLine();
      if (!opts.quiet) out.write(`${prefix()} ✓ ${label}${summary ? `: ${summary}` : ""} (${secs.toFixed(1)} s)\n`);
      label = "";
      detail = "";
    },
    log(msg: string) {
      clearLine();
      if (!opts.quiet) out.write(`${prefix()} ${msg}\n`);
      render();
    },
    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      clearLine();
    },
  };
}
