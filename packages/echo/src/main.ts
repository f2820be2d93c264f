#!/usr/bin/env node
// Entry point of the ambit-echo process (`node dist/main.js [mode] …`, or the `ambit-echo` bin).
// The first SIGTERM/SIGINT asks the running mode to stop cleanly; a second one exits at once.
import { main } from "./cli.js";

const stopSignal = new Promise<string>((resolve) => {
  const onSignal = (signal: NodeJS.Signals) => {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    process.once("SIGTERM", () => process.exit(143));
    process.once("SIGINT", () => process.exit(130));
    resolve(signal);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
});

const io = {
  out: (text: string | Uint8Array) => void process.stdout.write(text),
  err: (text: string) => void process.stderr.write(text),
  stopSignal,
};

main(process.argv.slice(2), process.env, io).then(
  (code) => process.stdout.write("", () => process.exit(code)),
  (err: unknown) => {
    process.stderr.write(`ambit-echo: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
