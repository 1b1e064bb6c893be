// Step definitions for the flagd-testbed provider scenarios (gherkin/*.feature), driving the
// real OpenFeature JS server SDK and flagd provider against a flagpole started by
// tests/conformance/run. The environment is changed through tests/conformance/control, which
// plays the part of the testbed's launchpad (restart after a connection loss, flag change).
//
// Environment (set by tests/conformance/run): CONFORMANCE_WORK, CONFORMANCE_MODE,
// CONFORMANCE_CLIENT, CONFORMANCE_SKIPS, CONFORMANCE_RESULTS, CONFORMANCE_CONTROL.
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { isDeepStrictEqual } = require('node:util');
const { After, AfterAll, Before, BeforeStep, Given, Then, When, setDefaultTimeout } = require('@cucumber/cucumber');
const { OpenFeature, ProviderEvents, ProviderStatus } = require('@openfeature/server-sdk');
const { FlagdProvider } = require('@openfeature/flagd-provider');

setDefaultTimeout(60_000);

const WORK = process.env.CONFORMANCE_WORK;
const MODE = process.env.CONFORMANCE_MODE;
const CLIENT = process.env.CONFORMANCE_CLIENT;
const CONTROL = process.env.CONFORMANCE_CONTROL;
const RESULTS = process.env.CONFORMANCE_RESULTS;
const SKIP_RULES = JSON.parse(fs.readFileSync(process.env.CONFORMANCE_SKIPS, 'utf8')).rules;
const EVENT_TIMEOUT_MS = 20_000;
const READY_TIMEOUT_MS = 10_000;

const PORTS = Object.fromEntries(
  fs
    .readFileSync(path.join(WORK, 'ports'), 'utf8')
    .split('\n')
    .map((line) => line.split('='))
    .filter(([, value]) => /^\d+$/.test(value ?? ''))
    .map(([name, value]) => [name, Number(value)]),
);

const EVENTS = {
  ready: ProviderEvents.Ready,
  error: ProviderEvents.Error,
  stale: ProviderEvents.Stale,
  change: ProviderEvents.ConfigurationChanged,
};

const CASTS = {
  Boolean: (text) => text.trim().toLowerCase() === 'true',
  String: (text) => text,
  Integer: (text) => Number.parseInt(text, 10),
  Long: (text) => Number.parseInt(text, 10),
  Float: (text) => Number.parseFloat(text),
  Object: (text) => JSON.parse(text),
};

const OPTION_TYPES = {
  CacheType: (text) => text,
  String: (text) => text,
  Integer: (text) => Number.parseInt(text, 10),
  Long: (text) => Number.parseInt(text, 10),
  Boolean: (text) => text.trim().toLowerCase() === 'true',
  StringList: (text) =>
    text
      .split(',')
      .map((item) => item.trim())
      .filter(Boolean),
  ResolverType: (text) => text.toLowerCase(),
};

function cast(kind, text) {
  if (!(kind in CASTS)) throw new Error(`unknown type ${kind}`);
  return CASTS[kind](text);
}

function control(...args) {
  execFileSync(CONTROL, args, { stdio: ['ignore', 'inherit', 'inherit'] });
}

function unusedPort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function skipReason(name, tags) {
  for (const rule of SKIP_RULES) {
    if (rule.clients && !rule.clients.includes(CLIENT)) continue;
    if (rule.modes && !rule.modes.includes(MODE)) continue;
    if ((rule.tags ?? []).some((tag) => tags.includes(tag))) return rule.reason;
    if ((rule.scenarios ?? []).includes(name)) return rule.reason;
  }
  return null;
}

let scenarioNumber = 0;
let flagpoleDisturbed = false;

// --- hooks ------------------------------------------------------------------------------------

Before(function ({ pickle }) {
  scenarioNumber += 1;
  this.started = Date.now();
  this.tags = pickle.tags.map((t) => t.name);
  this.options = {};
  this.attributes = {};
  this.targetingKey = undefined;
  this.flag = undefined;
  this.details = undefined;
  this.client = undefined;
  this.domain = undefined;
  this.events = [];
  this.eventWaiters = [];
  this.lastEvent = undefined;
  this.skipReason = skipReason(pickle.name, this.tags);
  if (this.skipReason) return 'skipped';
  return undefined;
});

After(async function ({ pickle, gherkinDocument, result }) {
  if (this.domain !== undefined) await OpenFeature.clearProviders();
  if (!this.tags.includes(`@${MODE}`)) return;
  const status = result.status.toLowerCase();
  let detail = null;
  if (status === 'skipped') detail = this.skipReason ?? 'skipped by the runner';
  else if (status !== 'passed') {
    const lines = (result.message ?? status).trim().split('\n');
    detail = `${this.currentStep ?? ''}: ${lines[0]}`;
  }
  const line = {
    feature: gherkinDocument.feature.name,
    scenario: pickle.name,
    line: path.basename(pickle.uri),
    status,
    detail,
    seconds: (Date.now() - this.started) / 1000,
  };
  fs.appendFileSync(RESULTS, `${JSON.stringify(line)}\n`);
});

AfterAll(async function () {
  await OpenFeature.close();
});

// Remembers the step text, so a failure names its step.
BeforeStep(function ({ pickleStep }) {
  this.currentStep = pickleStep.text;
});

// --- configuration and provider ---------------------------------------------------------------

Given(/^an option "([^"]+)" of type "([^"]+)" with value "([^"]*)"$/, function (name, kind, value) {
  this.options[name] = OPTION_TYPES[kind](value);
});

Given(/^a (\w+) flagd provider$/, async function (kind) {
  if (fs.existsSync(path.join(WORK, 'restarting')) || flagpoleDisturbed) {
    control('await-up');
    flagpoleDisturbed = false;
  }
  const inProcess = MODE === 'in-process';
  const options = {
    resolverType: inProcess ? 'in-process' : 'rpc',
    host: '127.0.0.1',
    port: inProcess ? PORTS.SYNC_PORT : PORTS.EVAL_PORT,
    deadlineMs: 1000,
    streamDeadlineMs: 0,
    retryBackoffMs: 500,
    retryBackoffMaxMs: 1000,
    retryGracePeriod: 2,
  };
  let wait = true;
  if (kind === 'unavailable') {
    options.port = await unusedPort();
    wait = false;
  } else if (kind === 'forbidden') {
    options.port = PORTS.FORBIDDEN_PORT;
    wait = false;
  } else if (kind === 'ssl') {
    // The TLS instance, trusting only the run's throw-away CA (tests/support/gen-test-certs).
    // The provider falls back to the system roots when certPath names no file, so a wrong
    // path fails the handshake rather than passing unnoticed.
    options.port = inProcess ? PORTS.SSL_SYNC_PORT : PORTS.SSL_EVAL_PORT;
    options.tls = true;
    options.certPath = path.join(WORK, 'certs', 'ca.pem');
  } else if (kind === 'socket') {
    // The unix-socket instance (tests/conformance/lib.sh); grpc-js sends :authority localhost.
    options.socketPath = path.join(WORK, inProcess ? 'sync.sock' : 'flagd.sock');
  } else if (kind !== 'stable' && kind !== 'metadata') {
    throw new Error(`no ${kind} flagd provider in this suite`);
  }
  Object.assign(options, this.options);
  this.domain = `scenario-${scenarioNumber}`;
  const provider = new FlagdProvider(options);
  if (wait) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`provider not ready after ${READY_TIMEOUT_MS}ms`)), READY_TIMEOUT_MS);
    });
    try {
      await Promise.race([OpenFeature.setProviderAndWait(this.domain, provider), timeout]);
    } finally {
      clearTimeout(timer);
    }
  } else {
    OpenFeature.setProvider(this.domain, provider);
  }
  this.client = OpenFeature.getClient(this.domain);
});

When(/^the connection is lost for (\d+)s$/, function (seconds) {
  flagpoleDisturbed = true;
  control('lose', seconds);
});

When(/^the flag was modified$/, function () {
  control('change');
});

Then(/^the client should be in (\w+) state$/, function (state) {
  const expected = ProviderStatus[state.toUpperCase()];
  const actual = this.client.providerStatus;
  if (actual !== expected) throw new Error(`client state ${actual}, expected ${expected}`);
});

// --- flag and context -------------------------------------------------------------------------

Given(/^an? (\w+)-flag with key "([^"]*)" and a default value "(.*)"$/, function (kind, key, text) {
  this.flag = { kind, key, defaultValue: cast(kind, text) };
});

Given(/^a context containing a key "([^"]*)", with type "([^"]*)" and with value "(.*)"$/, function (key, kind, value) {
  this.attributes[key] = cast(kind, value);
});

Given(/^a context containing a targeting key with value "(.*)"$/, function (value) {
  this.targetingKey = value;
});

Given(
  /^a context containing a nested property with outer key "([^"]*)" and inner key "([^"]*)", with value "(.*)"$/,
  function (outer, inner, value) {
    this.attributes[outer] = { ...(this.attributes[outer] ?? {}), [inner]: value };
  },
);

When(/^the flag was evaluated with details$/, async function () {
  const { kind, key, defaultValue } = this.flag;
  const context = { ...this.attributes };
  if (this.targetingKey !== undefined) context.targetingKey = this.targetingKey;
  const method = {
    Boolean: 'getBooleanDetails',
    String: 'getStringDetails',
    Integer: 'getNumberDetails',
    Float: 'getNumberDetails',
    Object: 'getObjectDetails',
  }[kind];
  this.details = await this.client[method](key, defaultValue, context);
});

// --- evaluation details -----------------------------------------------------------------------

function describe(details) {
  const { value, variant, reason, errorCode, errorMessage } = details;
  return JSON.stringify({ value, variant, reason, errorCode, errorMessage });
}

Then(/^the resolved details value should be "(.*)"$/, function (text) {
  const expected = cast(this.flag.kind, text);
  const actual = this.details.value;
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(`value ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)} ${describe(this.details)}`);
  }
});

Then(/^the variant should be "(.*)"$/, function (variant) {
  if (this.details.variant !== variant) {
    throw new Error(`variant ${this.details.variant}, expected ${variant} ${describe(this.details)}`);
  }
});

Then(/^the reason should be "(.*)"$/, function (reason) {
  if (this.details.reason !== reason) {
    throw new Error(`reason ${this.details.reason}, expected ${reason} ${describe(this.details)}`);
  }
});

Then(/^the error-code should be "(.*)"$/, function (code) {
  const expected = code === '' ? undefined : code;
  if (this.details.errorCode !== expected) {
    throw new Error(`error code ${this.details.errorCode}, expected ${expected} ${describe(this.details)}`);
  }
});

Then(/^the resolved metadata should contain$/, function (table) {
  const metadata = this.details.flagMetadata ?? {};
  for (const row of table.hashes()) {
    const expected = cast(row.metadata_type, row.value);
    const actual = metadata[row.key];
    if (!isDeepStrictEqual(actual, expected)) {
      throw new Error(`metadata ${row.key} is ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}; all: ${JSON.stringify(metadata)}`);
    }
  }
});

Then(/^the resolved metadata is empty$/, function () {
  const metadata = this.details.flagMetadata ?? {};
  if (Object.keys(metadata).length > 0) throw new Error(`metadata ${JSON.stringify(metadata)}, expected none`);
});

// --- events -----------------------------------------------------------------------------------

Given(/^a (\w+) event handler$/, function (event) {
  this.client.addHandler(EVENTS[event], (details) => {
    this.events.push({ event, details });
    for (const wake of this.eventWaiters.splice(0)) wake();
  });
});

// Waits for an event of that type and consumes it with every event recorded before it.
async function awaitEvent(world, event, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const index = world.events.findIndex((e) => e.event === event);
    if (index >= 0) {
      world.lastEvent = world.events[index].details;
      world.events.splice(0, index + 1);
      return;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      const seen = world.events.map((e) => e.event);
      throw new Error(`no ${event} event within ${timeoutMs}ms (recorded: ${JSON.stringify(seen)})`);
    }
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, remaining);
      world.eventWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

When(/^a (\w+) event was fired$/, async function (event) {
  await awaitEvent(this, event, EVENT_TIMEOUT_MS);
});

Then(/^the (\w+) event handler should have been executed$/, async function (event) {
  await awaitEvent(this, event, EVENT_TIMEOUT_MS);
});

Then(/^the (\w+) event handler should have been executed within (\d+)ms$/, async function (event, ms) {
  await awaitEvent(this, event, Number(ms));
});

Then(/^the flag should be part of the event payload$/, function () {
  const changed = this.lastEvent?.flagsChanged ?? [];
  if (!changed.includes(this.flag.key)) {
    throw new Error(`${this.flag.key} not among the changed flags ${JSON.stringify(changed)}`);
  }
});
