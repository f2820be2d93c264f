// Warn lines a flood cannot multiply: per key, the first `burst` events of a window are logged at once; the others
// within the window are only counted, and one line at the end of the window reports how many there were. A steady
// flood thus costs at most `burst` + 1 lines per key and window.
import type { Logger } from "pino";

interface Window {
  logged: number;
  suppressed: number;
  last: { fields: object; msg: string };
}

export class ThrottledLog {
  private readonly windows = new Map<string, Window>();

  constructor(private readonly log: Logger, private readonly windowMs = 10_000, private readonly burst = 1) {}

  warn(key: string, fields: object, msg: string): void {
    let w = this.windows.get(key);
    if (!w) {
      const opened: Window = { logged: 0, suppressed: 0, last: { fields, msg } };
      this.windows.set(key, opened);
      setTimeout(() => {
        this.windows.delete(key);
        if (opened.suppressed) this.log.warn({ ...opened.last.fields, suppressed: opened.suppressed }, `${opened.last.msg} (${opened.suppressed} more like it in the last ${this.windowMs} ms)`);
      }, this.windowMs).unref();
      w = opened;
    }
    if (w.logged < this.burst) {
      w.logged++;
      this.log.warn(fields, msg);
      return;
    }
    w.suppressed++;
    w.last = { fields, msg };
  }
}
