// The logger shape the ZDS server needs: a subset of pino's, so a pino logger can be passed as is.
export interface ZdsLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const noop = (): void => {};

/** Discards everything (the default). */
export const silentZdsLogger: ZdsLogger = { debug: noop, info: noop, warn: noop, error: noop };
