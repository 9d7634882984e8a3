// An app written with the official Inngest SDK, as a team would write it, served at
// http://127.0.0.1:$PORT/api/inngest. The test suite starts it next to a real
// `paysteps dev` (or `serve`) and checks what each function did through paysteps' API.
//
// The SDK reads its configuration from the environment, as in any app:
// INNGEST_BASE_URL (paysteps), INNGEST_DEV, INNGEST_SIGNING_KEY, INNGEST_EVENT_KEY.
import http from "node:http";

import { serve } from "inngest/node";
import { Inngest, NonRetriableError, RetryAfterError, referenceFunction } from "inngest";

const port = Number(process.env.PORT ?? 3939);
const inngest = new Inngest({ id: "e2e-app" });

// Invoked by `flow`; no trigger of its own.
const double = inngest.createFunction(
  { id: "double", triggers: [] },
  async ({ event, step }) => {
    const n = await step.run("read", () => event.data.n);
    return { doubled: n * 2 };
  },
);

// Every step tool in sequence: a step, a sleep, a step that fails once, two steps in
// parallel, a wait for an event, and an invocation.
const flow = inngest.createFunction(
  { id: "flow", retries: 2, triggers: [{ event: "test/flow.started" }] },
  async ({ event, step }) => {
    const user = await step.run("load-user", () => ({ id: event.data.user, plan: "pro" }));
    await step.sleep("nap", "1s");
    const flaky = await step.run("flaky", async () => {
      const attempts = (flakyAttempts.get(event.id) ?? 0) + 1;
      flakyAttempts.set(event.id, attempts);
      if (attempts === 1) throw new Error("first attempt fails");
      return attempts;
    });
    const [a, b] = await Promise.all([
      step.run("par-a", () => "a"),
      step.run("par-b", () => "b"),
    ]);
    const approval = await step.waitForEvent("approval", {
      event: "test/flow.approved",
      timeout: "1m",
      if: "async.data.user == event.data.user",
    });
    const invoked = await step.invoke("double-it", { function: double, data: { n: 21 } });
    return { user, flaky, parallel: a + b, approved: approval?.data?.by ?? null, invoked };
  },
);
const flakyAttempts = new Map();

// Fails for good from its first step; its failure handler runs as a function of its own.
const fatal = inngest.createFunction(
  {
    id: "fatal",
    triggers: [{ event: "test/fatal.started" }],
    onFailure: async ({ event, step }) => {
      return await step.run("note-failure", () => ({
        failed: event.data.function_id,
        message: event.data.error?.message ?? null,
      }));
    },
  },
  async ({ step }) => {
    await step.run("explode", () => {
      throw new NonRetriableError("card declined for good");
    });
    return "unreachable";
  },
);

// A step whose retries run out; the function catches its error and goes on.
const caught = inngest.createFunction(
  { id: "caught", retries: 0, triggers: [{ event: "test/caught.started" }] },
  async ({ step }) => {
    let recovered = null;
    try {
      await step.run("always-fails", () => {
        throw new Error("never works");
      });
    } catch (err) {
      recovered = err.message;
    }
    const after = await step.run("after", () => "went on");
    await step.sendEvent("announce", { name: "test/caught.announced", data: { recovered } });
    return { recovered, after };
  },
);

// Started by the event `caught` sends with step.sendEvent.
const announced = inngest.createFunction(
  { id: "announced", triggers: [{ event: "test/caught.announced" }] },
  async ({ event }) => ({ heard: event.data.recovered }),
);

// A Stripe event, delivered to paysteps' webhook: its data is the Stripe event.
const checkout = inngest.createFunction(
  {
    id: "stripe-checkout",
    triggers: [
      { event: "stripe/checkout.session.completed", if: "event.data.livemode == false" },
    ],
  },
  async ({ event, step }) =>
    await step.run("read-session", () => ({
      type: event.data.type,
      session: event.data.data.object.id,
    })),
);

// Sleeps long enough for the test to restart paysteps in the middle.
// After a checkout, waits for the same customer's paid invoice: both Stripe events.
const awaitInvoice = inngest.createFunction(
  { id: "await-invoice", triggers: [{ event: "stripe/checkout.session.completed" }] },
  async ({ step }) => {
    const paid = await step.waitForEvent("invoice-paid", {
      event: "stripe/invoice.paid",
      timeout: "1m",
      if: "async.data.data.object.customer == event.data.data.object.customer",
    });
    return { invoice: paid?.data?.data?.object?.id ?? null };
  },
);

// Throws outside any step on its first attempt, asking to be retried a second later.
const outsideAttempts = new Map();
const outside = inngest.createFunction(
  { id: "outside", triggers: [{ event: "test/outside.started" }] },
  async ({ event }) => {
    const attempts = (outsideAttempts.get(event.id) ?? 0) + 1;
    outsideAttempts.set(event.id, attempts);
    if (attempts === 1) throw new RetryAfterError("not yet", "1s");
    return { attempts };
  },
);

// Invokes a function compiled into paysteps, addressed as app "paysteps".
const cross = inngest.createFunction(
  { id: "cross", triggers: [{ event: "test/cross.sdk" }] },
  async ({ event, step }) => {
    const tripled = await step.invoke("ask-rust", {
      function: referenceFunction({ appId: "paysteps", functionId: "rust-triple" }),
      data: { n: event.data.n },
    });
    return { tripled };
  },
);

// Waits on a condition that is more than a field equality; cancelled by a close that
// gives a reason.
const gate = inngest.createFunction(
  {
    id: "gate",
    triggers: [{ event: "test/gate.waiting" }],
    cancelOn: [
      { event: "test/gate.closed", if: "async.data.user == event.data.user && async.data.reason != 'none'" },
    ],
  },
  async ({ step }) => {
    const opened = await step.waitForEvent("vip", {
      event: "test/gate.opened",
      timeout: "1m",
      if: "async.data.level > 2 && async.data.user == event.data.user",
    });
    return { level: opened?.data?.level ?? null };
  },
);

// One run per job; a `test/sleeper.cancelled` event for its job cancels it.
const sleeper = inngest.createFunction(
  {
    id: "sleeper",
    triggers: [{ event: "test/sleeper.started" }],
    idempotency: "event.data.job",
    cancelOn: [{ event: "test/sleeper.cancelled", match: "data.job" }],
  },
  async ({ event, step }) => {
    const before = await step.run("before", () => "slept");
    await step.sleep("long-nap", event.data.sleep ?? "3s");
    return await step.run("after", () => `${before} and woke`);
  },
);

// Fails at a step until the test flips a switch, then is replayed from the dashboard.
let replayFixed = false;
const fragile = inngest.createFunction(
  { id: "fragile", retries: 0, triggers: [{ event: "test/fragile.started" }] },
  async ({ step }) => {
    const first = await step.run("first", () => {
      fragileFirstRuns += 1;
      return "done once";
    });
    const second = await step.run("second", () => {
      if (!replayFixed) throw new Error("not fixed yet");
      return "fixed";
    });
    return { first, second, firstRuns: fragileFirstRuns };
  },
);
let fragileFirstRuns = 0;

// Fires every minute.
const ticker = inngest.createFunction(
  { id: "ticker", triggers: [{ cron: "TZ=Europe/Paris * * * * *" }] },
  async ({ step }) => await step.run("tick", () => "ticked"),
);

// step.fetch asks the server to make the request (a Gateway op), which paysteps does
// not do: the run fails naming the op.
const fetcher = inngest.createFunction(
  { id: "fetcher", triggers: [{ event: "test/fetcher.started" }] },
  async ({ step }) => {
    const response = await step.fetch("http://127.0.0.1:9/");
    return response.status;
  },
);

// A step whose output is more than a run may hold.
const bulky = inngest.createFunction(
  { id: "bulky", triggers: [{ event: "test/bulky.started" }] },
  async ({ step }) => (await step.run("big", () => "x".repeat(5 * 1024 * 1024))).length,
);

// Started only by events whose condition holds.
const picky = inngest.createFunction(
  { id: "picky", triggers: [{ event: "test/picky", if: "event.data.plan == 'pro' && event.data.seats > 1" }] },
  async ({ event }) => event.data.seats,
);

// At most one run per lane at a time.
const laned = inngest.createFunction(
  { id: "laned", concurrency: { limit: 1, key: "event.data.lane" }, triggers: [{ event: "test/laned" }] },
  async ({ event, step }) => {
    await step.sleep("hold", "3s");
    return event.data.lane;
  },
);

// With PAYSTEPS_TEST_EXTRA set, the app has one more function, for the re-sync test.
const extra = process.env.PAYSTEPS_TEST_EXTRA
  ? [
      inngest.createFunction(
        { id: "extra", triggers: [{ event: "test/extra" }] },
        async () => "extra",
      ),
    ]
  : [];

// With PAYSTEPS_TEST_UNSUPPORTED set, the app also declares a setting paysteps does
// not carry out, so its sync is refused.
const unsupported = process.env.PAYSTEPS_TEST_UNSUPPORTED
  ? [
      inngest.createFunction(
        { id: "debounced", debounce: { period: "5s" }, triggers: [{ event: "test/debounced" }] },
        async () => "never",
      ),
    ]
  : [];

const handler = serve({
  client: inngest,
  functions: [
    double,
    flow,
    fatal,
    caught,
    announced,
    checkout,
    awaitInvoice,
    outside,
    cross,
    gate,
    laned,
    fetcher,
    picky,
    bulky,
    sleeper,
    fragile,
    ticker,
    ...extra,
    ...unsupported,
  ],
});

// A test hook beside the SDK's endpoint: lets `fragile` succeed from now on.
const server = http.createServer((req, res) => {
  if (req.url === "/test/fix") {
    replayFixed = true;
    res.end("ok");
    return;
  }
  handler(req, res);
});

server.listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${port}/api/inngest`);
});
