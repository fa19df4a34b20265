// The ports `npm test` binds lie outside the kernel's ephemeral port range: the suites open
// thousands of client sockets, each on a local port the kernel picks from that range, and a cluster
// or pooler started mid-run on a fixed port inside it found it taken once ("could not bind IPv4
// address 127.0.0.1: Address already in use" for bench-load-quick's cluster on 54340).
import { describe, expect, it } from "vitest";
import {
  DEFAULT_TEST_PORT_BASE, ephemeralPortRange, TEST_PORT_OFFSETS, TEST_PORT_SPAN, TEST_REPLICA_STACK, TEST_STACK, testPort,
  testPortBaseProblem,
} from "../../scripts/lib/stack.ts";

const LINUX_DEFAULT: [number, number] = [32768, 60999];
const IANA_DYNAMIC: [number, number] = [49152, 65535];

describe("the test stack's ports", () => {
  it("lie outside this machine's ephemeral range, and outside Linux's and macOS/Windows' defaults, by default", () => {
    const range = ephemeralPortRange();
    // Linux (the CI machine) says its range; the check would be empty without it
    expect(range).not.toBeNull();
    for (const r of [range!, LINUX_DEFAULT, IANA_DYNAMIC]) {
      expect(testPortBaseProblem(DEFAULT_TEST_PORT_BASE, r), `range ${r.join("..")}`).toBeNull();
    }
  });

  it("of this run are all within the span the check covers, each purpose its own", () => {
    const ports = (Object.keys(TEST_PORT_OFFSETS) as (keyof typeof TEST_PORT_OFFSETS)[]).map(testPort);
    // the bench-load-quick cluster's pooler takes its port + 3, the suites' own ones the first free of 10
    const taken = [...ports, testPort("benchLoadQuick") + 3];
    expect(new Set(taken).size).toBe(taken.length);
    const base = testPort("db");
    for (const p of taken) {
      expect(p).toBeGreaterThanOrEqual(base);
      expect(p).toBeLessThan(base + TEST_PORT_SPAN);
    }
    for (const from of [testPort("poolerExtra"), testPort("poolerClients"), testPort("migrationCrash"), testPort("runbook")]) {
      expect(from + 9).toBeLessThan(base + TEST_PORT_SPAN);
      expect(taken.filter((p) => p > from && p <= from + 9)).toEqual([]);
    }
    expect([TEST_STACK.dbPort, TEST_STACK.functionsPort, TEST_STACK.poolerPort, TEST_STACK.replicaPort, TEST_REPLICA_STACK.functionsPort])
      .toEqual([testPort("db"), testPort("functions"), testPort("pooler"), testPort("replica"), testPort("replicaFunctions")]);
  });

  it("refuse a base inside the ephemeral range, naming the ports, the range and a way out", () => {
    // the old default: the stack on 54330, bench-load-quick's cluster on 54340
    const problem = testPortBaseProblem(54330, LINUX_DEFAULT);
    expect(problem).toContain("54330..54389");
    expect(problem).toContain("32768..60999");
    expect(problem).toContain(`below ${32768 - TEST_PORT_SPAN + 1}`);
    // a span that only reaches into the range is refused too
    expect(testPortBaseProblem(32768 - TEST_PORT_SPAN + 1, LINUX_DEFAULT)).not.toBeNull();
    expect(testPortBaseProblem(32768 - TEST_PORT_SPAN, LINUX_DEFAULT)).toBeNull();
    expect(testPortBaseProblem(61000, LINUX_DEFAULT)).toBeNull();
    expect(testPortBaseProblem(65500, LINUX_DEFAULT)).toContain("1024..65535");
    expect(testPortBaseProblem(Number("abc"), LINUX_DEFAULT)).toContain("must lie in");
  });
});
