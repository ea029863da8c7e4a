// fast-check as the conformance suite imports it, but each property run a share of its
// runs: the short form of the suite's property tests (tests/support/durable.py). vitest's
// config (vitest.config.mjs) puts this file in place of "fast-check" only when
// DURABLE_STREAMS_PROPERTY_SHARE is set; each property keeps at least one run.
export * from "./node_modules/fast-check/lib/fast-check.js"
import { assert as assertAll } from "./node_modules/fast-check/lib/fast-check.js"

const share = Number(process.env.DURABLE_STREAMS_PROPERTY_SHARE)
if (!(share > 0 && share <= 1)) {
  throw new Error(
    `DURABLE_STREAMS_PROPERTY_SHARE must be a share of the runs in (0, 1],` +
      ` not ${JSON.stringify(process.env.DURABLE_STREAMS_PROPERTY_SHARE)}`
  )
}

export function assert(property, params) {
  // fast-check's own default when a property names no count
  const runs = params?.numRuns ?? 100
  return assertAll(property, { ...params, numRuns: Math.max(1, Math.ceil(runs * share)) })
}
