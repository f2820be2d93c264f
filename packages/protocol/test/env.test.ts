// The environment-variable reader every program uses: durations, sizes, and one ConfigError naming each bad variable.
import { z } from "zod";
import { describe, expect, it } from "vitest";
import { ConfigError, envVar, parseDuration, parseEnv, parseSize } from "../src/index.js";

describe("parseDuration", () => {
  it.each([
    ["100ms", 100], ["5s", 5000], ["1m30s", 90_000], ["24h", 86_400_000], ["1.5s", 1500], ["1h2m3s4ms", 3_723_004],
  ])("%s → %d ms", (v, ms) => expect(parseDuration(v)).toBe(ms));
  it.each(["", "5", "s", "5 s", "5x", "-5s", "5s ", "1.5.5s", "abc5s"])("%j is not a duration", (v) => expect(parseDuration(v)).toBeNull());
});

describe("parseSize", () => {
  it.each([["16777216", 16_777_216], ["1Ki", 1024], ["4Mi", 4 * 1024 ** 2], ["1Gi", 1024 ** 3]])("%s → %d bytes", (v, n) => expect(parseSize(v)).toBe(n));
  it.each(["", "4MB", "-1", "1.5Mi", "Mi"])("%j is not a size", (v) => expect(parseSize(v)).toBeNull());
});

describe("parseEnv", () => {
  const Env = z.object({
    NAME: z.string().min(1),
    PORT: envVar.port(8080),
    ON: envVar.bool(false),
    WAIT: envVar.duration("5s"),
    LIST: envVar.list("a,b"),
    LEVEL: envVar.logLevel,
  });
  const fix = { NAME: "a name", PORT: "a port number", WAIT: "a duration such as 5s" };
  const failure = (env: Record<string, string>) => {
    try {
      parseEnv(Env, env, fix);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error("accepted a bad environment");
  };

  it("reads values and defaults; an empty variable counts as unset", () => {
    expect(parseEnv(Env, { NAME: "x", PORT: "", ON: "1", WAIT: "1m30s", LIST: " c, ,d " }, fix)).toEqual({ NAME: "x", PORT: 8080, ON: true, WAIT: 90_000, LIST: ["c", "d"], LEVEL: "info" });
    expect(parseEnv(Env, { NAME: "x", UNRELATED: "ignored" }, fix)).toEqual({ NAME: "x", PORT: 8080, ON: false, WAIT: 5000, LIST: ["a", "b"], LEVEL: "info" });
  });

  it("names every bad variable on its own line, with the value and what to set it to", () => {
    const m = failure({ NAME: "", PORT: "99999", ON: "yes", WAIT: "soon", LEVEL: "loud" });
    const [head, ...lines] = m.split("\n");
    expect(head).toBe("bad configuration:");
    expect(lines.map((l) => l.trim().split(/[= ]/)[0]).sort()).toEqual(["LEVEL", "NAME", "ON", "PORT", "WAIT"]);
    expect(m).toMatch(/NAME is not set: .* \(set it to a name\)/);
    expect(m).toMatch(/PORT="99999": .* \(set it to a port number\)/);
    expect(m).toMatch(/WAIT="soon": is not a duration \(set it to a duration such as 5s\)/);
    expect(m).toMatch(/ON="yes": /);
  });
});
