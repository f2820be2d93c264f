// Warn lines a flood cannot multiply: per key, the first event is logged at once; the others within the window are
// only counted, and one line at the end of the window reports how many there were. A steady flood thus costs at
// most two lines per key and window.
import type { Logger } from "pino";

interface Window {
  suppressed: number;
  last: { fields: object; msg: string };
}

export class ThrottledLog {
  private readonly windows = new Map<string, Window>();

  constructor(private readonly log: Logger, private readonly windowMs = 10_000) {}

  warn(key: string, fields: object, msg: string): void {
    const open = this.windows.get(key);
    if (open) {
      open.suppressed++;
      open.last = { fields, msg };
      return;
    }
    this.log.warn(fields, msg);
    const w: Window = { suppressed: 0, last: { fields, msg } };
    this.windows.set(key, w);
    setTimeout(() => {
      this.windows.delete(key);
      if (w.suppressed) this.log.warn({ ...w.last.fields, suppressed: w.suppressed }, `${w.last.msg} (${w.suppressed} more like it in the last ${this.windowMs} ms)`);
    }, this.windowMs).unref();
  }
}
